"""The results page: one self-contained HTML file a teacher can put on a projector, print, or
mail. One result gives the run's page (the host, the claims grid, what the host sees of each
side, the charts with their method, every table); several give the compare view, one column
per run with the differences marked. Inline CSS, charts as inline SVG, the result document
itself embedded as JSON; no network address anywhere, so it reads offline.

The claims are judged before rendering (`result.claims`, as `explorer report` does); a
document without them is shown as not judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from explorer.document import side_title
from explorer.output import compare, figures, report
from explorer.output.files import write_text
from explorer.output.markup import Raw, badge, cell, details, esc, page, table
from explorer.result import JudgedClaim, Result, SideRecord
from explorer.units import human_bytes

NOT_MEASURED, NOT_JUDGED = "not measured", "not judged"
S = TypeVar("S")  # what a chart draws: a result, or the runs compared
NOT_JUDGED_TEXT = "The claims were not judged for this page: the document carries no verdicts."
DIFFERS_NOTE = '<p class="note">≠ marks a row whose runs differ.</p>'


def render(runs: list[tuple[str, Result]]) -> str:
    """One run's page, or the compare view of several (label, result) runs."""
    if not runs:
        raise ValueError("render needs at least one result")
    if len(runs) == 1:
        return _run_page(runs[0][1])
    return _compare_page(runs)


def write(runs: list[tuple[str, Result]], path: str | Path) -> Path:
    """The page written whole or not at all."""
    write_text(str(path), render(runs), "the results page")
    return Path(path)


def _embedded(result: Result) -> Any:
    """The document as the page embeds it: the JSON explorer writes."""
    return result.model_dump(by_alias=True, mode="json")


# ---- one run ------------------------------------------------------------------------------


def _run_page(result: Result) -> str:
    body = [
        _header(result),
        _tcg_banner([("", result)]),
        _claims_grid(result),
        _host_card(result),
        _key_figures(result),
        _host_sees(result),
        _charts(result),
        _tables(result),
    ]
    return page(report.title(result), "\n".join(part for part in body if part), _embedded(result))


def _header(result: Result) -> str:
    scenario = result.scenario
    when = f"{result.started_at or '?'} to {result.finished_at or '?'}"
    lines = [
        f"<h1>{esc(report.title(result))}</h1>",
        f'<p class="sub">{esc(scenario.description or "")} · run {esc(result.run_id)}, {esc(when)}</p>',
    ]
    lines += [f'<p class="warning">{esc(note)}</p>' for note in report.notes(result)]
    lines += [f'<p class="warning">Side {esc(n)} not measured: {esc(why)}</p>' for n, why in result.skipped.items()]
    return "\n".join(lines)


def _tcg_sides(result: Result) -> list[str]:
    return [side_title(s, n) for n, s in result.sides.items() if s.accel.lower() == "tcg"]


def _tcg_banner(runs: list[tuple[str, Result]]) -> str:
    """The banner a TCG side calls for: its timings measure an emulator."""
    named = [f"{', '.join(_tcg_sides(r))}{f' (run {label})' if label else ''}" for label, r in runs if _tcg_sides(r)]
    if not named:
        return ""
    return (
        '<div class="banner" role="alert"><strong>VM timings measure an emulator.</strong> '
        f"{esc('; '.join(named))} ran under TCG, QEMU's software emulation, not KVM: their start times, "
        "throughput and memory (with the translation cache) are an emulator's, not what a host with KVM shows.</div>"
    )


def _yes_no(value: bool | None, yes: str, no: str) -> str:
    return "unknown" if value is None else (yes if value else no)


def _host_card(result: Result) -> str:
    host = result.host
    facts = [
        ("host", f"{host.hostname} ({host.os or '?'}, {host.arch or '?'})"),
        ("kernel", f"{host.kernel_release} (boot_id {host.boot_id or '?'})"),
        ("CPUs", f"{host.cpu_cores} × {host.cpu_model or '?'}"),
        ("memory", human_bytes(host.memory_bytes)),
        (
            "itself a VM",
            _yes_no(host.virtualized, "yes: its CPU flags name a hypervisor (VMs here run nested)", "no"),
        ),
        ("scenario", result.scenario.name),
        ("explorer", host.explorer or "?"),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    rows = []
    for name, side in result.sides.items():
        accel = side.accel or "?"
        shown = Raw(f'<span class="accel-tcg">{esc(accel.upper())}</span>') if accel == "tcg" else accel
        rows.append([side_title(side, name), side.kind or "?", report.engine(side), cell(shown)])
    engines = table(["side", "kind", "engine", "accelerator"], rows, css="engines")
    return (
        '<section id="host"><h2>The host</h2><div class="host">'
        f'<div class="card"><dl class="facts">{dl}</dl></div><div>{engines}</div></div></section>'
    )


# ---- the claims ---------------------------------------------------------------------------


def _cell_for(claim: JudgedClaim, name: str) -> Raw:
    """A grid cell: the side's verdict badge, its evidence and rule behind <details>."""
    judged = claim.sides.get(name)
    if judged is None:
        why = "this claim has no part judged for this side" if claim.sides else claim.summary
        return cell(Raw(badge(NOT_MEASURED) + details("why", f"<p>{esc(why)}</p>")))
    rules = list(dict.fromkeys(p.rule for p in judged.parts if p.rule)) or [claim.rule]
    body = f"<p>{esc(judged.evidence)}</p><p><b>Rule:</b> {esc('; '.join(rules))}</p>"
    return cell(Raw(badge(judged.verdict) + details("evidence and rule", body)))


def _claim_head(number: int, claim: JudgedClaim) -> str:
    overall = f"overall: {claim.verdict}"
    body = f"<p>{esc(claim.summary)}</p><p><b>Rule:</b> {esc(claim.rule)}</p>"
    return f"{number}. {esc(claim.claim)}{details(overall, body)}"


def _claims_grid(result: Result) -> str:
    claims = result.claims
    heading = '<section id="claims"><h2>The claims, side by side</h2>'
    if not claims:
        return f'{heading}<p class="why">{esc(NOT_JUDGED)}: {esc(NOT_JUDGED_TEXT)}</p></section>'
    sides = result.sides
    head = "".join(f'<th scope="col">{esc(side_title(s, n))}</th>' for n, s in sides.items())
    rows = [
        f'<tr><th scope="row">{_claim_head(i, c)}</th>{"".join(_cell_for(c, n) for n in sides)}</tr>'
        for i, c in enumerate(claims, 1)
    ]
    legend = (
        '<p class="note">Each cell: the verdict for that side; its evidence and the rule applied open below it.</p>'
    )
    return (
        f'{heading}<table class="grid"><thead><tr><th scope="col">claim</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{legend}</section>"
    )


def _key_figures(result: Result) -> str:
    headers, rows = report.summary_table(result)
    return f'<section id="figures"><h2>Side by side</h2>{table(headers, rows, css="keys", row_head=True)}</section>'


# ---- what the host sees -------------------------------------------------------------------


def _ps_line(side: SideRecord) -> str:
    vis = side.visibility
    if vis is None:
        return NOT_MEASURED
    names = ", ".join(vis.process_names) or "the workload's name"
    if vis.names_unconfirmed:
        return f"unknown: {vis.names_unconfirmed}"
    if vis.visible_on_host is None:
        return NOT_MEASURED
    if vis.visible_on_host:
        found = [f"{p.name} {p.host_pid}" for p in vis.named_on_host or [] if p.this_target]
        return f"yes: ps -e on the host lists {', '.join(found) or names}"
    return f"no: ps -e | grep {names} finds none of its processes; the host sees {report.runtime_summary(side) or 'nothing'}"


def _kernel_table(side: SideRecord) -> str:
    kernel = side.kernel
    if kernel is None or not kernel.available:
        return f"<p>Kernel inside: unknown ({esc((kernel.reason if kernel else None) or 'no guest view')})</p>"
    whose = {True: "the host's kernel", False: "a kernel of its own", None: "undecided"}[kernel.shared]
    rows: list[list[Any]] = [
        ["inside", kernel.guest_release, kernel.guest_boot_id or "none (no boot_id file inside)"],
        ["host", kernel.host_release, kernel.host_boot_id],
    ]
    return f"<p>Kernel: <b>{esc(whose)}</b></p>" + table(["", "release", "boot_id"], rows, css="kernel", row_head=True)


def _process_rows(side: SideRecord) -> list[list[Any]]:
    vis = side.visibility
    if vis is None:
        return []
    procs = [("workload", p) for p in vis.workload_processes]
    procs += [(p.role or "runtime", p) for p in vis.runtime_processes]
    rows = []
    for role, p in procs:
        argv0 = p.cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
        name = f"{p.name} ({argv0})" if argv0 and argv0 != p.name else p.name
        rows.append(
            [
                role,
                cell(p.host_pid),
                name,
                f"{p.user or '?'} ({p.uid if p.uid is not None else '?'})",
                cell(human_bytes(p.pss_bytes), sort=p.pss_bytes),
                cell(human_bytes(p.rss_bytes), sort=p.rss_bytes),
            ]
        )
    return rows


def _side_card(name: str, side: SideRecord) -> str:
    mem = side.memory
    total = f"host memory per instance: {human_bytes(mem.host_total.pss_bytes if mem else None)} PSS"
    if mem is not None and mem.tcg_cache_pss_bytes:
        total += f", of it {human_bytes(mem.tcg_cache_pss_bytes)} TCG translation cache"
    rows = _process_rows(side)
    procs = (
        table(["role", "host PID", "name", "user (uid)", "PSS", "RSS"], rows)
        if rows
        else '<p class="why">no host process recorded</p>'
    )
    return (
        f'<article class="card"><h3>{esc(side_title(side, name))}</h3>'
        f'<p class="sub">{esc(side.kind or "?")}, {esc(report.engine(side))}</p>'
        f"<p><b>Workload in the host's ps -e:</b> {esc(_ps_line(side))}</p>"
        f"{_kernel_table(side)}<p><b>Host processes</b> ({esc(total)}):</p>{procs}</article>"
    )


def _host_sees(result: Result) -> str:
    cards = "".join(_side_card(name, side) for name, side in result.sides.items())
    return f'<section id="host-sees"><h2>What the host sees</h2><div class="sides">{cards}</div></section>'


# ---- charts and tables --------------------------------------------------------------------


def _figure(chart: figures.Chart[S], subject: S) -> str:
    why = chart.missing(subject)
    if why:
        return f'<p class="why" id="chart-{chart.key}">{esc(figures.why_line(chart.title, why))}</p>'
    method = details("How this figure was measured", f"<p>{esc(chart.method(subject))}</p>")
    return (
        f'<figure id="chart-{chart.key}"><h3>{esc(chart.title)}</h3>{figures.svg(chart, subject)}'
        f"<figcaption>{method}</figcaption></figure>"
    )


def _charts(result: Result) -> str:
    return '<section id="charts"><h2>Charts</h2>' + "".join(_figure(c, result) for c in figures.CHARTS) + "</section>"


SHOWN_ABOVE = {"Side by side", "Claims, per side", "Verdicts"}


def _tables(result: Result) -> str:
    parts = []
    for heading, (headers, rows), _ in report.sections(result):
        if heading in SHOWN_ABOVE:
            continue
        notes = "".join(f'<p class="note">{esc(n)}</p>' for n in report.section_notes(heading, result))
        parts.append(details(heading, table(headers, rows) + notes))
    return '<section id="tables"><h2>Every table</h2>' + "".join(parts) + "</section>"


# ---- several runs -------------------------------------------------------------------------


def _differs(cells: list[Any]) -> bool:
    return len({str(c) for c in cells}) > 1


def _compare_claims(runs: list[tuple[str, Result]]) -> str:
    """Rows: a claim for one side; columns: the runs; a row whose runs disagree is marked."""
    heading = '<section id="claims"><h2>The claims, run by run</h2>'
    if not any(r.claims for _, r in runs):
        return f'{heading}<p class="why">{esc(NOT_JUDGED)}: {esc(NOT_JUDGED_TEXT)}</p></section>'
    titles: dict[tuple[str, str], str] = {}
    order: dict[str, int] = {}
    for _, result in runs:
        for number, claim in enumerate(result.claims, 1):
            order.setdefault(claim.id, number)
            for name, judged in claim.sides.items():
                titles.setdefault((claim.id, name), f"{number}. {claim.claim}: {judged.title or name}")
    verdicts = [{(c.id, n): s.verdict for c in r.claims for n, s in c.sides.items()} for _, r in runs]
    rows, marked = [], []
    for key in sorted(titles, key=lambda k: order[k[0]]):
        cells = [v.get(key, NOT_MEASURED) if r.claims else NOT_JUDGED for v, (_, r) in zip(verdicts, runs)]
        rows.append([titles[key], *(cell(badge(v)) for v in cells)])
        marked.append(_differs(cells))
    grid = table(["claim: side", *(label for label, _ in runs)], rows, css="grid", row_head=True, marked=marked)
    return f"{heading}{grid}{DIFFERS_NOTE}</section>"


def _compare_page(runs: list[tuple[str, Result]]) -> str:
    results = [r for _, r in runs]
    rows = compare.figure_rows(results)
    figures_table = table(
        ["", *(label for label, _ in runs)], rows, css="compare", row_head=True, marked=[_differs(r[1:]) for r in rows]
    )
    warnings = "".join(
        f'<p class="warning">{esc(w)}; their figures are not like for like</p>' for w in compare.differences(runs)
    )
    body = [
        f"<h1>explorer: {len(runs)} runs compared</h1>",
        f'<p class="sub">{esc(", ".join(label for label, _ in runs))}</p>',
        warnings,
        _tcg_banner(runs),
        _compare_claims(runs),
        f'<section id="figures"><h2>Hosts and key figures</h2>{figures_table}{DIFFERS_NOTE}</section>',
        f'<section id="charts"><h2>Charts</h2>{_figure(figures.COMPARE, runs)}</section>',
    ]
    embedded = [{"label": label, "result": _embedded(result)} for label, result in runs]
    return page(f"explorer: {len(runs)} runs compared", "\n".join(p for p in body if p), embedded)
