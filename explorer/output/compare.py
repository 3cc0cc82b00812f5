"""Saved results side by side, one column per run, to compare hosts and CI runners."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from explorer.document import side_title
from explorer.output import costs, io_table, report
from explorer.output.tables import table
from explorer.result import DensityFigures, Result, SideRecord
from explorer.units import human_bytes, seconds

COMPARE_SCHEMA = "explorer.compare/1"


# ---- compare -----------------------------------------------------------------------------

HostRow = tuple[str, Callable[[Result], str]]
SideRow = tuple[str, Callable[[SideRecord], str]]


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _run(r: Result) -> str:
    return f"{r.run_id or '?'} at {r.started_at or '?'}, explorer {r.host.explorer or '?'}"


HOST_ROWS: list[HostRow] = [
    ("host", lambda r: f"{r.host.hostname} ({r.host.os or '?'})"),
    ("CPU", lambda r: f"{r.host.cpu_model or '?'}, {r.host.cpu_cores} cores"),
    ("host memory", lambda r: human_bytes(r.host.memory_bytes)),
    ("host kernel", lambda r: r.host.kernel_release),
    ("host is itself a VM", lambda r: _yes_no(r.host.virtualized)),
    ("scenario", lambda r: r.scenario.name),
    ("run", _run),
]


def _size(side: SideRecord, what: str) -> str:
    image = side.image
    if image is None:
        return "-"
    value = image.content_bytes if what == "content" else image.stored_bytes
    if value is not None:
        return human_bytes(value)
    if image.one_size_bytes is not None:
        return f"- (one figure: {human_bytes(image.one_size_bytes)} as stored)"
    return "-"


def _ready(side: SideRecord) -> str:
    ready = side.startup.ready if side.startup is not None else None
    return f"{seconds(ready.median)} (n={ready.n})" if ready else "-"


def _kernel(side: SideRecord) -> str:
    k = side.kernel
    if k is None or k.shared is None:
        return "unknown"
    return "the host's" if k.shared else f"its own: {k.guest_release or '?'}"


def _marginal(density: DensityFigures | None) -> str:
    if density is None or not density.count or density.marginal_pss_bytes is None:
        return "-"
    return f"{human_bytes(density.marginal_pss_bytes)} (N={density.count})"


def _host_pss(side: SideRecord) -> str:
    return human_bytes(side.memory.host_total.pss_bytes if side.memory is not None else None)


def _visible(side: SideRecord) -> str:
    return _yes_no(side.visibility.visible_on_host if side.visibility is not None else None)


SIDE_ROWS: list[SideRow] = [
    ("engine", report.engine),
    ("accel", lambda s: s.accel),
    ("image content, unpacked", lambda s: _size(s, "content")),
    ("image stored", lambda s: _size(s, "stored")),
    ("start to ready, median", _ready),
    ("host memory per instance (PSS)", _host_pss),
    ("marginal PSS per instance, many running", lambda s: _marginal(s.density)),
    ("workload in host's ps -e", _visible),
    ("ops/s under the standard load (its first path)", lambda s: _load(s, "rate")),
    ("host system calls per op (traced round)", lambda s: _load(s, "per_op")),
    ("kernel", _kernel),
]


def labels_for(paths: list[str]) -> list[str]:
    """Column titles: file names, or whole paths where two runs share a file name."""
    stems = [Path(p).stem for p in paths]
    return [stem if stems.count(stem) == 1 else str(p) for stem, p in zip(stems, paths)]


def _load(side: SideRecord, what: str) -> str:
    load = side.load
    if load is None or load.status != "ok":
        return f"- ({load.status if load is not None else 'not measured'})"
    if what == "per_op":
        per_op = load.traced.per_op if load.traced is not None else None
        return "-" if per_op is None else f"{per_op:.2f}"
    rate = costs.median(load, "ops_s")
    return "-" if rate is None else f"{rate:,.0f}"


def _native_rows(results: list[Result]) -> list[list[Any]]:
    """The native reference of each run, the floor the ratios below are taken against."""
    cells = []
    for result in results:
        rate = costs.native_rate(result)
        status = result.load.native.status if result.load is not None else "not measured"
        cells.append(f"{rate:,.0f}" if rate else f"- ({status})")
    return [["native process: ops/s under the standard load", *cells]] if any(r.load for r in results) else []


def _ratio_rows(results: list[Result], names: list[str]) -> list[list[Any]]:
    """Each path of each side: its throughput against its own run's native process (ratios
    travel across hosts), one row per path any run measured."""
    by_run = [{(row.side, row.path): row for row in costs.paths_of(result)} for result in results]
    keys = list(dict.fromkeys(key for rows in by_run for key in rows if key[0] in names))
    out = []
    for side, path in keys:
        cells = []
        for rows in by_run:
            row = rows.get((side, path))
            cells.append(f"{row.ratio:.2f}x" if row and row.ratio is not None else "-")
        if any(cell != "-" for cell in cells):
            title = next(rows[(side, path)].title for rows in by_run if (side, path) in rows)
            out.append([f"{title}, {path}: ops/s against the native process", *cells])
    return out


def figure_rows(results: list[Result]) -> list[list[Any]]:
    """One row per figure, one cell per run: the host, then each side's key figures, the native
    reference and each side's ratio to it (the table and the results page both show them)."""
    rows = [[label, *(fn(r) for r in results)] for label, fn in HOST_ROWS]
    names = list(dict.fromkeys(name for r in results for name in r.sides))
    for name in names:
        title = next(side_title(r.sides[name], name) for r in results if name in r.sides)
        for label, side_fn in SIDE_ROWS:
            cells = [side_fn(r.sides[name]) if name in r.sides else "not measured" for r in results]
            rows.append([f"{title}: {label}", *cells])
    return rows + _native_rows(results) + _ratio_rows(results, names) + io_table.compare_rows(results, names)


def compare_table(runs: list[tuple[str, Result]]) -> tuple[list[str], list[list[Any]]]:
    """One column per run; rows for the host, the key figures of each side, and each verdict
    (the claims judged before, into each result's `claims`, as for the report and the page)."""
    results = [r for _, r in runs]
    rows = figure_rows(results)
    verdicts = [{v.id: v.verdict for v in r.claims} for r in results]
    ids = list(dict.fromkeys(v.id for r in results for v in r.claims))
    for number, claim_id in enumerate(ids, 1):
        rows.append([f"claim {number}: {claim_id}", *(v.get(claim_id, "-") for v in verdicts)])
    return ["", *(label for label, _ in runs)], rows


def _workload(result: Result) -> str:
    s = result.scenario
    recipe = s.recipe
    what = s.image or (f"{recipe.suite}: {', '.join(recipe.packages)}" if recipe is not None else "?")
    command = " ".join(recipe.command) if recipe is not None else ""
    return f"{what}{f' ({command})' if command else ''}, port {s.port if s.port is not None else '?'}"


# What makes two runs measure the same thing: scenario, workload and readiness check.
SAMENESS: list[tuple[str, Callable[[Result], str | None]]] = [
    ("scenarios", lambda r: r.scenario.name),
    ("workloads", _workload),
    ("readiness checks", lambda r: r.scenario.ready_check or r.scenario.ready),
]


def differences(runs: list[tuple[str, Result]]) -> list[str]:
    """What differs between the runs beyond the host, said before any figure is compared."""
    found = []
    for what, fn in SAMENESS:
        values = {label: fn(result) for label, result in runs}
        if len(set(map(str, values.values()))) > 1:
            found.append(f"the runs measure different {what}: " + "; ".join(f"{k}: {v}" for k, v in values.items()))
    return found


def render_compare(runs: list[tuple[str, Result]], fmt: str = "table") -> str:
    headers, rows = compare_table(runs)
    warnings = [f"Warning: {text}; their figures are not like for like" for text in differences(runs)]
    if fmt == "json":
        doc = {
            "schema": COMPARE_SCHEMA,
            "runs": headers[1:],
            "warnings": warnings,
            "rows": [{"figure": row[0], "values": dict(zip(headers[1:], row[1:]))} for row in rows],
        }
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "markdown":
        said = "".join(f"> {w}\n\n" for w in warnings)
        return "# explorer: runs compared\n" + said + table(headers, rows, fmt) + "\n"
    return "".join(f"{w}\n" for w in warnings) + table(headers, rows, fmt) + "\n"
