"""Results -> text: terminal tables, Markdown (a CI job summary) or JSON. Formatting only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from explorer.document import side_title
from explorer.output import costs, fit, glance, inside_table, io_table
from explorer.output.density_table import FITS_WIDTHS, fits_table
from explorer.output.tables import table
from explorer.result import HostProcess, Phases, Result, SideRecord
from explorer.units import human_bytes, plural, seconds

FORMATS = ("table", "markdown", "json")
SUMMARY_HEADING = "Side by side"
TERMINAL_COLUMNS = 120  # what the side-by-side and claims tables are wrapped to


def engine(side: SideRecord) -> str:
    """What runs the side, as its engine described itself (`summary`), with the accelerator
    of a side that has one; results saved before engines wrote a summary are described from
    the facts they did record."""
    e = side.engine
    accel = side.accel
    if e.summary:
        return e.summary + (f", {accel.upper()}" if accel and accel != "native" else "")
    if e.engine_version:  # a Docker engine's facts
        runtime = e.runtime or e.default_runtime or "?"
        if e.runsc_version:
            runtime = f"runsc {e.runsc_version}, {e.runsc_platform or '?'} platform"
        return f"Docker {e.engine_version} ({runtime})"
    return f"libvirt {e.libvirt_version or '?'}, QEMU {e.qemu_version or '?'}, {(accel or '?').upper()}"


def _parts(parts: dict[str, int] | None) -> str:
    return ", ".join(f"{name} {human_bytes(value)}" for name, value in (parts or {}).items())


def _image(side: SideRecord) -> str:
    """Content (unpacked) and stored, each with its parts; the virtual disk size apart."""
    img = side.image
    if img is None:
        return "-"
    if img.content_bytes is None:
        if img.one_size_bytes is not None:
            return f"{human_bytes(img.one_size_bytes)} ({img.one_size_method})"
        return human_bytes(img.image_bytes)
    content = f"content {human_bytes(img.content_bytes)} unpacked"
    if len(img.content_parts or {}) > 1:
        content += f" ({_parts(img.content_parts)})"
    if img.stored_bytes is None:
        return content
    stored = f"stored {human_bytes(img.stored_bytes)}"
    method = img.stored_method or ""
    compressed = "compressed" if "zlib" in method or "gzip" in method else ""
    parts = img.stored_parts or {}
    if "qcow2" in parts:
        virtual = f" of {human_bytes(img.disk_virtual_bytes)} virtual" if img.disk_virtual_bytes else ""
        stored += f" (qcow2 {human_bytes(parts['qcow2'])}{virtual}{', ' + compressed if compressed else ''})"
    elif compressed:
        stored += " (layers gzip'd, as a registry stores them)"
    elif "box" in parts:
        stored += " (the Vagrant box)"
    return f"{content}; {stored}"


def _visible(side: SideRecord) -> str:
    vis = side.visibility
    if vis is None:
        return "unknown (not probed)"
    if vis.names_unconfirmed:
        return f"unknown ({vis.names_unconfirmed})"
    workload = [p for p in vis.workload_processes if p.name in vis.process_names]
    if workload:
        shown = ", ".join(f"{p.name} {p.host_pid} (pid {p.pid_inside} inside)" for p in workload[:3])
        more = f" +{len(workload) - 3} more" if len(workload) > 3 else ""
        return f"yes: {shown}{more}"
    return f"no; host sees only {runtime_summary(side) or 'nothing'}"


def runtime_summary(side: SideRecord) -> str:
    """The host processes that run a side's workload, by role: 'sandbox 1234, gofer 1230, 2 stubs'."""
    by_role: dict[str, list[HostProcess]] = {}
    for proc in side.visibility.runtime_processes if side.visibility is not None else []:
        by_role.setdefault(proc.role or "runtime", []).append(proc)
    parts = []
    for role, procs in by_role.items():
        if len(procs) == 1:
            parts.append(
                f"{role} {procs[0].name} {procs[0].host_pid}" if role == "VMM" else f"{role} {procs[0].host_pid}"
            )
        else:
            parts.append(f"{len(procs)} {role}s")
    return ", ".join(parts)


def _kernel(side: SideRecord) -> str:
    k = side.kernel
    if k is None or not k.available:
        return f"unknown ({(k.reason if k is not None else None) or 'no guest view'})"
    whose = {True: "the host's", False: "its own", None: "undecided"}[k.shared]
    if k.same_boot_id is None:
        return f"{k.guest_release}, {whose} (no boot_id inside; host {k.host_release})"
    return f"{k.guest_release}, {whose} (boot_id {'=' if k.same_boot_id else '!='} host)"


def _inside(side: SideRecord) -> str:
    inside = side.visibility.inside if side.visibility is not None else None
    if inside is None or not inside.available:
        return "unknown"
    text = (
        f"{plural(inside.user_process_count or 0, 'user process', 'user processes')}, "
        f"{plural(inside.kernel_thread_count or 0, 'kernel thread', 'kernel threads')}"
    )
    ours = len(inside.explorer_pids_inside)
    names = Counter(inside.explorer_processes_inside)
    shown = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items()) or "init, watcher"  # older: the VM's
    return f"{text} (+{ours} of explorer's: {shown})" if ours else text


def _startup(side: SideRecord) -> str:
    summary = side.startup.ready if side.startup is not None else None
    if summary is None:
        return "-"
    return f"{seconds(summary.median)} median ({seconds(summary.min)}-{seconds(summary.max)}, n={summary.n})"


def runtime_name(side: SideRecord) -> str:
    """What runs a side's workload on the host, by its roles: shim, VMM, sandbox+gofer+..."""
    return "+".join(side.roles or ["runtime"])


def _memory(side: SideRecord) -> str:
    mem = side.memory
    if mem is None:
        return "-"
    w, r = mem.workload, mem.runtime
    shown = f"{human_bytes(w.pss_bytes)} PSS" if w.processes else "none on the host"
    roles = mem.runtime_roles
    if len(roles) > 1:
        each = ", ".join(f"{role} {human_bytes(v.pss_bytes)}" for role, v in roles.items())
        text = f"workload {shown}; {each} PSS"
    else:
        text = f"workload {shown}; {runtime_name(side)} {human_bytes(r.pss_bytes)} PSS"
    if mem.configured_bytes is not None:
        text += f" (configured {human_bytes(mem.configured_bytes)})"
    if mem.tcg_cache_pss_bytes:
        text += f"; the VMM's PSS includes {human_bytes(mem.tcg_cache_pss_bytes)} of TCG translation cache"
    return text


def _isolation(side: SideRecord) -> str:
    iso = side.isolation
    if iso is None or not iso.available:
        return "-"
    ns = ",".join(iso.namespaces_differing) or "none"
    return f"{iso.subject}: own ns {ns}; {iso.capability_count} caps; seccomp {iso.seccomp}"


def _identity(side: SideRecord) -> str:
    who = side.identity
    if who is None:
        return "-"
    if not who.available:
        return (who.reason or "-").split(" (")[0]
    inside, root = who.uid_inside, who.root_host_uid
    text = f"{who.subject}: host UID {who.host_uid}" + (f" (UID {inside} inside)" if inside is not None else "")
    text += "; root inside = " + ("host root" if root == 0 else f"host UID {root}" if root is not None else "unmapped")
    caps = who.capabilities_over_host
    text += f"; caps over the host: {', '.join(caps) if caps else 'none'}"
    others = who.others_as_host_root
    return text + (f"; also as host root: {', '.join(others)}" if others else "")


SUMMARY_ROWS: list[tuple[str, Callable[[SideRecord], str]]] = [
    ("runs on", engine),
    ("image size", _image),
    ("workload in host's ps -e", _visible),
    ("kernel", _kernel),
    ("processes inside", _inside),
    ("start to ready", _startup),
    ("memory on host", _memory),
    ("isolation", _isolation),
    ("user on the host", _identity),
]


def summary_table(result: Result) -> tuple[list[str], list[list[str]]]:
    sides = result.sides
    headers = ["", *(side_title(side, name) for name, side in sides.items())]
    rows = [[label, *(fn(side) for side in sides.values())] for label, fn in SUMMARY_ROWS]
    return headers, rows


def summary_widths(result: Result) -> list[int]:
    """Column widths that keep the side-by-side table within a terminal's width for any
    number of sides (tabulate wraps the cells)."""
    count = max(1, len(result.sides))
    label = max(len(label) for label, _ in SUMMARY_ROWS)
    return [label, *[max(12, (TERMINAL_COLUMNS - label - 2 * count) // count)] * count]


def process_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    rows: list[list[Any]] = []
    for side_name, side in result.sides.items():
        vis = side.visibility
        if vis is None:
            continue
        procs = [("workload", p) for p in vis.workload_processes]
        procs += [(p.role or "runtime", p) for p in vis.runtime_processes]
        for role, p in procs:
            chain = " <- ".join(f"{q.name}({q.pid})" for q in p.parents)
            rows.append(
                [
                    side_title(side, side_name),
                    role,
                    p.host_pid,
                    p.pid_inside,
                    _process_name(p),
                    f"{p.uid} ({p.user})",
                    human_bytes(p.rss_bytes),
                    human_bytes(p.pss_bytes),
                    chain or "-",
                ]
            )
    headers = ["side", "role", "host PID", "PID inside", "name", "uid (host name)", "RSS", "PSS", "parents"]
    return headers, rows


def _process_name(proc: HostProcess) -> str:
    """The name ps -e shows, and argv[0] where it says more (gVisor's are all `exe`)."""
    argv0 = proc.cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
    return f"{proc.name} ({argv0})" if argv0 and argv0 != proc.name else proc.name


def startup_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    rows: list[list[Any]] = []
    for side_name, side in result.sides.items():
        for milestone, s in (side.startup.summary if side.startup is not None else {}).items():
            rows.append(
                [
                    side_title(side, side_name),
                    milestone.removesuffix("_s"),
                    seconds(s.min),
                    seconds(s.median),
                    seconds(s.max),
                    seconds(s.stdev),
                    s.n,
                ]
            )
    return ["side", "milestone (since create)", "min", "median", "max", "stdev", "n"], rows


def time_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    """Where the run's wall time went: check, and per side prepare, the measured create -> ready
    windows, probes, destroys, cleanup and the rest; the share outside the measured windows."""
    phases, rows = result.phases or Phases(), []
    total = phases.total_s or 0.0

    def share(value: float | None) -> str:
        return f"{value / total:.0%}" if total and value is not None else "-"

    rows.append(["", "check", seconds(phases.check_s), share(phases.check_s)])
    if phases.reference_s:
        rows.append(["", "native reference (under load)", seconds(phases.reference_s), share(phases.reference_s)])
    starts = 0.0
    for name, p in phases.sides.items():
        side = result.sides.get(name)
        title = side_title(side, name) if side is not None else name
        spent = {
            "probes": p.probes_s,
            "after readiness (later milestones)": p.after_ready_s,
            "load": p.load_s,
            "destroy (the engine's removal)": p.destroy_s,
            "clean": p.clean_s,
        }
        other = p.measure_s - (p.starts_s or 0.0) - sum(v or 0.0 for v in spent.values())
        starts += p.starts_s or 0.0
        rows.append([title, "prepare (build or find)", seconds(p.prepare_s), share(p.prepare_s)])
        rows.append([title, f"create -> ready (n={len(p.start_s)})", seconds(p.starts_s), share(p.starts_s)])
        rows += [[title, key, seconds(value), share(value)] for key, value in spent.items() if value is not None]
        rows.append([title, "other (explorer's own)", seconds(max(other, 0.0)), share(max(other, 0.0))])
    rows.append(["", "total", seconds(total), "100%"])
    rows.append(["", "outside the create -> ready windows", seconds(total - starts), share(total - starts)])
    return ["side", "phase", "wall time", "share"], rows


PROCESS_WIDTHS = [None, None, None, None, 24, None, None, None, 32]  # the long cells wrap
CLAIMS_WIDTHS = [24, 16, 14, 58]  # terminal tables wrap long cells; Markdown cells cannot
VERDICTS_WIDTHS = [24, 14, 76]


def claims_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    """One row per claim and side: the verdicts explorer.claims computed, with their
    evidence (in this module's formats)."""
    rows: list[list[Any]] = []
    for i, c in enumerate(result.claims, 1):
        for j, side in enumerate(c.sides.values()):
            rows.append([f"{i}. {c.claim}" if j == 0 else "", side.title, side.verdict, side.evidence])
        if not c.sides:
            rows.append([f"{i}. {c.claim}", "-", c.verdict, c.summary])
    return ["claim", "side", "verdict", "evidence"], rows


def verdicts_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    """Each claim's overall verdict, where its sides agree or not, and the rule applied."""
    rows: list[list[Any]] = [
        [f"{i}. {c.claim}", c.verdict, f"{c.summary}. Rule: {c.rule}"] for i, c in enumerate(result.claims, 1)
    ]
    return ["claim", "overall", "where the sides stand, and the rule"], rows


Section = tuple[str, tuple[list[str], list[list[Any]]], Sequence[int | None] | None]


def sections(result: Result) -> list[Section]:
    """(heading, (headers, rows), column widths a terminal table wraps to, if any)."""
    out: list[Section] = [
        (SUMMARY_HEADING, summary_table(result), summary_widths(result)),
        ("Processes seen from the host", process_table(result), PROCESS_WIDTHS),
        ("Startup", startup_table(result), None),
    ]
    measured = {name: side.density for name, side in result.sides.items() if side.density is not None}
    if measured:
        titles = {name: side_title(result.sides[name], name) for name in measured}
        density = fits_table(measured, titles)
        out.append(("Density (many instances running, least squares against N)", density, FITS_WIDTHS))
    if result.phases is not None:
        out.append(("Time", time_table(result), None))
    if result.claims:
        out.append(("Claims, per side", claims_table(result), CLAIMS_WIDTHS))
        out.append(("Verdicts", verdicts_table(result), VERDICTS_WIDTHS))
    if costs.rows_of(result):
        out.append((costs.COST_HEADING, costs.costs_table(result), costs.COST_WIDTHS))
        out.append((costs.SURFACE_HEADING, costs.surface_table(result), costs.SURFACE_WIDTHS))
    if io_table.measured(result):
        out.append((io_table.IO_HEADING, io_table.io_table(result), io_table.IO_WIDTHS))
    if inside_table.measured(result):
        out.append((inside_table.INSIDE_HEADING, inside_table.inside_table(result), None))
        out.append((inside_table.CROSS_HEADING, inside_table.cross_check_table(result), None))
    return out


def section_notes(heading: str, result: Result) -> list[str]:
    notes = {
        costs.COST_HEADING: costs.cost_notes,
        costs.SURFACE_HEADING: costs.surface_notes,
        io_table.IO_HEADING: io_table.io_notes,
        inside_table.INSIDE_HEADING: inside_table.inside_notes,
    }
    return notes[heading](result) if heading in notes else []


def title(result: Result) -> str:
    host = result.host
    return f"explorer: {result.scenario.name} on {host.hostname} ({host.kernel_release}, {host.cpu_cores} cores)"


def untrusted(result: Result) -> list[str]:
    """What in the result cannot be trusted as measured: a side whose milestones happened in an
    impossible order (a readiness check that a proxy fooled, say)."""
    found = []
    for name, side in result.sides.items():
        check = side.startup.timeline if side.startup is not None else None
        if check is not None and not check.ok:
            found.append(f"the {side_title(side, name)}'s timeline is impossible ({'; '.join(check.problems[:3])})")
    return found


def notes(result: Result) -> list[str]:
    """Caveats about the whole run, shown under the title: a readiness check that may fire
    early, figures that cannot be trusted."""
    warning = result.scenario.ready_warning
    out = [f"Warning: {warning}"] if warning else []
    return out + [
        f"Warning: {text}: claims that read its startup figures are inconclusive" for text in untrusted(result)
    ]


DETAIL_HINT = (
    "(processes seen from the host, startup milestones, time phases, each verdict's evidence and rule, "
    "and the full cost and surface tables: --detail, the Markdown and JSON formats, and the page)"
)


def render(result: Result, fmt: str = "table", width: int = fit.NOT_A_TERMINAL, detail: bool = False) -> str:
    """The answer first (claims x sides, the sides that depart and why, the key figures), then
    with `detail` (always in Markdown) every other table; JSON is the document itself."""
    if fmt == "json":
        return document_json(result)
    if fmt == "markdown":
        return _markdown(result)
    parts = [fit.paragraph(title(result), width)]
    parts += [fit.paragraph(note, width) for note in notes(result)]
    skipped = result.skipped
    parts += [fit.paragraph(f"(side {name} not measured: {reason})", width) for name, reason in skipped.items()]
    parts += ["\nClaims of the document, per side", glance.grid(result, width)]
    departing = glance.departures(result, width)
    if departing:
        parts += ["\nWhere a side departs from a claim, and why", *departing]
    parts += ["\nKey figures per side", glance.key_figures(result, width)]
    if not detail:
        return "\n".join([*parts, "", fit.paragraph(DETAIL_HINT, width)]) + "\n"
    for heading, (headers, rows), _widths in sections(result):
        if heading == SUMMARY_HEADING:  # one block per side: its figures read whole at any width
            parts += [f"\n{heading}", _blocks(*_turned(headers, rows), width)]
        else:
            parts += [f"\n{heading}", _fitted(headers, rows, width)]
        parts += [fit.paragraph(note, width, indent="  - ", rest="    ") for note in section_notes(heading, result)]
    return "\n".join(parts) + "\n"


def _turned(headers: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """A table with the sides as columns, turned so that each side is a row."""
    return ["side", *(str(r[0]) for r in rows)], [[h, *(r[i] for r in rows)] for i, h in enumerate(headers) if i]


def _fitted(headers: list[str], rows: list[list[Any]], width: int) -> str:
    """The table within `width`, or where no column layout fits, one block per row: its first
    cell, then each other column's header and value, wrapped."""
    text = fit.table(headers, rows, width)
    return text if text is not None else _blocks(headers, rows, width)


def _blocks(headers: list[str], rows: list[list[Any]], width: int) -> str:
    """One block per row: its first cell, then each other column's header and value, wrapped."""
    blocks = []
    for row in rows:
        blocks.append(fit.paragraph(str(row[0]).replace("\n", " "), width))
        for header, value in zip(headers[1:], row[1:]):
            line = f"{header.replace(chr(10), ' ')}: {str(value).replace(chr(10), '; ')}"
            blocks.append(fit.paragraph(line, width, indent="  ", rest="    "))
    return "\n".join(blocks)


def _markdown(result: Result) -> str:
    """Every section, GitHub's tables: the answer first, then everything else."""
    parts = [f"# {title(result)}"]
    parts += [f"\n> {note}" for note in notes(result)]
    skipped = result.skipped
    if skipped:
        parts.append("\n".join(f"(side {name} not measured: {reason})" for name, reason in skipped.items()))
    parts += ["\n## Claims of the document, per side\n", table(*glance.grid_rows(result), "markdown")]
    departing = glance.departures(result, 10_000)
    if departing:
        parts += ["\n## Where a side departs from a claim, and why\n", *(f"- {line.strip()}" for line in departing)]
    parts += ["\n## Key figures per side\n", table(*glance.key_rows(result), "markdown")]
    for heading, (headers, rows), _widths in sections(result):
        parts.append(f"\n## {heading}\n")
        parts.append(table(headers, rows, "markdown"))
        parts += [f"\n> {note}" for note in section_notes(heading, result)]
    return "\n".join(parts) + "\n"


def document_json(result: Result) -> str:
    """The result document as explorer writes it: JSON, by the field names of its schema."""
    return result.model_dump_json(by_alias=True, indent=2) + "\n"
