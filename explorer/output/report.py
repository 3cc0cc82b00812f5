"""Results -> text: terminal tables, Markdown (a CI job summary) or JSON. Formatting only."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from explorer.document import side_title, upgraded
from explorer.output import costs, fit, glance, io_table
from explorer.output.density_table import FITS_WIDTHS, fits_table
from explorer.output.tables import table
from explorer.units import human_bytes, plural, seconds

FORMATS = ("table", "markdown", "json")
SUMMARY_HEADING = "Side by side"
TERMINAL_COLUMNS = 120  # what the side-by-side and claims tables are wrapped to


def engine(side: dict[str, Any]) -> str:
    """What runs the side, as its engine described itself (`summary`), with the accelerator
    of a side that has one; results saved before engines wrote a summary are described from
    the facts they did record."""
    e = side.get("engine", {})
    accel = side.get("accel")
    if e.get("summary"):
        return e["summary"] + (f", {str(accel).upper()}" if accel and accel != "native" else "")
    if e.get("engine_version"):  # a Docker engine's facts
        runtime = e.get("runtime") or e.get("default_runtime", "?")
        if e.get("runsc_version"):
            runtime = f"runsc {e['runsc_version']}, {e.get('runsc_platform', '?')} platform"
        return f"Docker {e.get('engine_version', '?')} ({runtime})"
    return f"libvirt {e.get('libvirt_version', '?')}, QEMU {e.get('qemu_version', '?')}, {str(accel or '?').upper()}"


def _parts(parts: dict[str, Any] | None) -> str:
    return ", ".join(f"{name} {human_bytes(value)}" for name, value in (parts or {}).items())


def _image(side: dict[str, Any]) -> str:
    """Content (unpacked) and stored, each with its parts; the virtual disk size apart."""
    img = side.get("image", {})
    if "content_bytes" not in img:
        if "one_size_bytes" in img:
            return f"{human_bytes(img['one_size_bytes'])} ({img['one_size_method']})"
        return human_bytes(img.get("image_bytes"))
    content = f"content {human_bytes(img['content_bytes'])} unpacked"
    if len(img.get("content_parts") or {}) > 1:
        content += f" ({_parts(img['content_parts'])})"
    if img.get("stored_bytes") is None:
        return content
    stored = f"stored {human_bytes(img['stored_bytes'])}"
    compressed = (
        "compressed" if "zlib" in img.get("stored_method", "") or "gzip" in img.get("stored_method", "") else ""
    )
    if "qcow2" in (img.get("stored_parts") or {}):
        virtual = f" of {human_bytes(img['disk_virtual_bytes'])} virtual" if img.get("disk_virtual_bytes") else ""
        stored += (
            f" (qcow2 {human_bytes(img['stored_parts']['qcow2'])}{virtual}{', ' + compressed if compressed else ''})"
        )
    elif compressed:
        stored += " (layers gzip'd, as a registry stores them)"
    elif "box" in (img.get("stored_parts") or {}):
        stored += " (the Vagrant box)"
    return f"{content}; {stored}"


def _visible(side: dict[str, Any]) -> str:
    vis = side.get("visibility", {})
    if vis.get("names_unconfirmed"):
        return f"unknown ({vis['names_unconfirmed']})"
    workload = [p for p in vis.get("workload_processes", []) if p["name"] in vis.get("process_names", [])]
    if workload:
        shown = ", ".join(f"{p['name']} {p['host_pid']} (pid {p['pid_inside']} inside)" for p in workload[:3])
        more = f" +{len(workload) - 3} more" if len(workload) > 3 else ""
        return f"yes: {shown}{more}"
    return f"no; host sees only {runtime_summary(side) or 'nothing'}"


def runtime_summary(side: dict[str, Any]) -> str:
    """The host processes that run a side's workload, by role: 'sandbox 1234, gofer 1230, 2 stubs'."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for proc in side.get("visibility", {}).get("runtime_processes", []):
        by_role.setdefault(proc.get("role", "runtime"), []).append(proc)
    parts = []
    for role, procs in by_role.items():
        if len(procs) == 1:
            parts.append(
                f"{role} {procs[0]['name']} {procs[0]['host_pid']}"
                if role == "VMM"
                else f"{role} {procs[0]['host_pid']}"
            )
        else:
            parts.append(f"{len(procs)} {role}s")
    return ", ".join(parts)


def _kernel(side: dict[str, Any]) -> str:
    k = side.get("kernel", {})
    if not k.get("available"):
        return f"unknown ({k.get('reason', 'no guest view')})"
    whose = {True: "the host's", False: "its own", None: "undecided"}[k.get("shared")]
    if k.get("same_boot_id") is None:
        return f"{k['guest_release']}, {whose} (no boot_id inside; host {k.get('host_release')})"
    return f"{k['guest_release']}, {whose} (boot_id {'=' if k.get('same_boot_id') else '!='} host)"


def _inside(side: dict[str, Any]) -> str:
    inside = side.get("visibility", {}).get("inside", {})
    if not inside.get("available"):
        return "unknown"
    text = (
        f"{plural(inside['user_process_count'], 'user process', 'user processes')}, "
        f"{plural(inside['kernel_thread_count'], 'kernel thread', 'kernel threads')}"
    )
    ours = len(inside.get("explorer_pids_inside", []))
    names = Counter(inside.get("explorer_processes_inside") or [])
    shown = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items()) or "init, watcher"  # older: the VM's
    return f"{text} (+{ours} of explorer's: {shown})" if ours else text


def _startup(side: dict[str, Any]) -> str:
    summary = side.get("startup", {}).get("summary", {}).get("ready_s")
    if not summary:
        return "-"
    return (
        f"{seconds(summary['median'])} median ({seconds(summary['min'])}-{seconds(summary['max'])}, n={summary['n']})"
    )


def runtime_name(side: dict[str, Any]) -> str:
    """What runs a side's workload on the host, by its roles: shim, VMM, sandbox+gofer+..."""
    return "+".join(side.get("roles") or ["runtime"])


def _memory(side: dict[str, Any]) -> str:
    mem = side.get("memory", {})
    w, r = mem.get("workload", {}), mem.get("runtime", {})
    shown = f"{human_bytes(w.get('pss_bytes'))} PSS" if w.get("processes") else "none on the host"
    roles = mem.get("runtime_roles") or {}
    if len(roles) > 1:
        each = ", ".join(f"{role} {human_bytes(v.get('pss_bytes'))}" for role, v in roles.items())
        text = f"workload {shown}; {each} PSS"
    else:
        text = f"workload {shown}; {runtime_name(side)} {human_bytes(r.get('pss_bytes'))} PSS"
    if "configured_bytes" in mem:
        text += f" (configured {human_bytes(mem['configured_bytes'])})"
    if mem.get("tcg_cache_pss_bytes"):
        text += f"; the VMM's PSS includes {human_bytes(mem['tcg_cache_pss_bytes'])} of TCG translation cache"
    return text


def _isolation(side: dict[str, Any]) -> str:
    iso = side.get("isolation", {})
    if not iso.get("available"):
        return "-"
    ns = ",".join(iso["namespaces_differing"]) or "none"
    return f"{iso['subject']}: own ns {ns}; {iso['capability_count']} caps; seccomp {iso['seccomp']}"


def _identity(side: dict[str, Any]) -> str:
    who = side.get("identity", {})
    if not who.get("available"):
        return who.get("reason", "-").split(" (")[0]
    inside = who.get("uid_inside")
    root = who.get("root_host_uid")
    text = f"{who['subject']}: host UID {who['host_uid']}" + (f" (UID {inside} inside)" if inside is not None else "")
    text += "; root inside = " + ("host root" if root == 0 else f"host UID {root}" if root is not None else "unmapped")
    caps = who.get("capabilities_over_host") or []
    text += f"; caps over the host: {', '.join(caps) if caps else 'none'}"
    others = who.get("others_as_host_root") or []
    return text + (f"; also as host root: {', '.join(others)}" if others else "")


SUMMARY_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
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


def summary_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sides = result["sides"]
    headers = ["", *(side_title(side, name) for name, side in sides.items())]
    rows = [[label, *(fn(side) for side in sides.values())] for label, fn in SUMMARY_ROWS]
    return headers, rows


def summary_widths(result: dict[str, Any]) -> list[int]:
    """Column widths that keep the side-by-side table within a terminal's width for any
    number of sides (tabulate wraps the cells)."""
    count = max(1, len(result["sides"]))
    label = max(len(label) for label, _ in SUMMARY_ROWS)
    return [label, *[max(12, (TERMINAL_COLUMNS - label - 2 * count) // count)] * count]


def process_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for side_name, side in result["sides"].items():
        vis = side.get("visibility", {})
        procs = [("workload", p) for p in vis.get("workload_processes", [])]
        procs += [(p.get("role", "runtime"), p) for p in vis.get("runtime_processes", [])]
        for role, p in procs:
            chain = " <- ".join(f"{q['name']}({q['pid']})" for q in p.get("parents", []))
            rows.append(
                [
                    side_title(side, side_name),
                    role,
                    p["host_pid"],
                    p.get("pid_inside"),
                    _process_name(p),
                    f"{p.get('uid')} ({p.get('user')})",
                    human_bytes(p.get("rss_bytes")),
                    human_bytes(p.get("pss_bytes")),
                    chain or "-",
                ]
            )
    headers = ["side", "role", "host PID", "PID inside", "name", "uid (host name)", "RSS", "PSS", "parents"]
    return headers, rows


def _process_name(proc: dict[str, Any]) -> str:
    """The name ps -e shows, and argv[0] where it says more (gVisor's are all `exe`)."""
    argv0 = (proc.get("cmdline") or "").split(" ", 1)[0].rsplit("/", 1)[-1]
    return f"{proc['name']} ({argv0})" if argv0 and argv0 != proc["name"] else proc["name"]


def startup_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for side_name, side in result["sides"].items():
        for milestone, s in side.get("startup", {}).get("summary", {}).items():
            rows.append(
                [
                    side_title(side, side_name),
                    milestone.removesuffix("_s"),
                    seconds(s["min"]),
                    seconds(s["median"]),
                    seconds(s["max"]),
                    seconds(s["stdev"]),
                    s["n"],
                ]
            )
    return ["side", "milestone (since create)", "min", "median", "max", "stdev", "n"], rows


def time_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Where the run's wall time went: check, and per side prepare, the measured create -> ready
    windows, probes, destroys, cleanup and the rest; the share outside the measured windows."""
    phases, rows = result.get("phases") or {}, []
    total = phases.get("total_s") or 0.0
    share = lambda v: f"{v / total:.0%}" if total and v is not None else "-"
    rows.append(["", "check", seconds(phases.get("check_s")), share(phases.get("check_s"))])
    if phases.get("reference_s"):
        rows.append(["", "native reference (under load)", seconds(phases["reference_s"]), share(phases["reference_s"])])
    starts = 0.0
    for name, p in (phases.get("sides") or {}).items():
        title = side_title(result["sides"].get(name, {}), name)
        spent = {
            "probes": p.get("probes_s"),
            "after readiness (later milestones)": p.get("after_ready_s"),
            "load": p.get("load_s"),
            "destroy (the engine's removal)": p.get("destroy_s"),
            "clean": p.get("clean_s"),
        }
        other = p.get("measure_s", 0.0) - p.get("starts_s", 0.0) - sum(v or 0.0 for v in spent.values())
        starts += p.get("starts_s", 0.0)
        rows.append([title, "prepare (build or find)", seconds(p.get("prepare_s")), share(p.get("prepare_s"))])
        rows.append(
            [
                title,
                f"create -> ready (n={len(p.get('start_s', []))})",
                seconds(p.get("starts_s")),
                share(p.get("starts_s")),
            ]
        )
        rows += [[title, key, seconds(value), share(value)] for key, value in spent.items() if value is not None]
        rows.append([title, "other (explorer's own)", seconds(max(other, 0.0)), share(max(other, 0.0))])
    rows.append(["", "total", seconds(total), "100%"])
    rows.append(["", "outside the create -> ready windows", seconds(total - starts), share(total - starts)])
    return ["side", "phase", "wall time", "share"], rows


PROCESS_WIDTHS = [None, None, None, None, 24, None, None, None, 32]  # the long cells wrap
CLAIMS_WIDTHS = [24, 16, 14, 58]  # terminal tables wrap long cells; Markdown cells cannot
VERDICTS_WIDTHS = [24, 14, 76]


def claims_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One row per claim and side: the verdicts explorer.claims computed, with their
    evidence (in this module's formats)."""
    rows = []
    for i, c in enumerate(result.get("claims", []), 1):
        for j, side in enumerate(c.get("sides", {}).values()):
            rows.append([f"{i}. {c['claim']}" if j == 0 else "", side["title"], side["verdict"], side["evidence"]])
        if not c.get("sides"):
            rows.append([f"{i}. {c['claim']}", "-", c["verdict"], c.get("summary", "")])
    return ["claim", "side", "verdict", "evidence"], rows


def verdicts_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Each claim's overall verdict, where its sides agree or not, and the rule applied."""
    rows = [
        [f"{i}. {c['claim']}", c["verdict"], f"{c.get('summary', '')}. Rule: {c['rule']}"]
        for i, c in enumerate(result.get("claims", []), 1)
    ]
    return ["claim", "overall", "where the sides stand, and the rule"], rows


Section = tuple[str, tuple[list[str], list[list[Any]]], Sequence[int | None] | None]


def sections(result: dict[str, Any]) -> list[Section]:
    """(heading, (headers, rows), column widths a terminal table wraps to, if any)."""
    out: list[Section] = [
        (SUMMARY_HEADING, summary_table(result), summary_widths(result)),
        ("Processes seen from the host", process_table(result), PROCESS_WIDTHS),
        ("Startup", startup_table(result), None),
    ]
    measured = {name: side for name, side in result["sides"].items() if "density" in side}
    if measured:
        out.append(("Density (many instances running, least squares against N)", fits_table(measured), FITS_WIDTHS))
    if result.get("phases"):
        out.append(("Time", time_table(result), None))
    if result.get("claims"):
        out.append(("Claims, per side", claims_table(result), CLAIMS_WIDTHS))
        out.append(("Verdicts", verdicts_table(result), VERDICTS_WIDTHS))
    if costs.rows_of(result):
        out.append((costs.COST_HEADING, costs.costs_table(result), costs.COST_WIDTHS))
        out.append((costs.SURFACE_HEADING, costs.surface_table(result), costs.SURFACE_WIDTHS))
    if io_table.measured(result):
        out.append((io_table.IO_HEADING, io_table.io_table(result), io_table.IO_WIDTHS))
    return out


def section_notes(heading: str, result: dict[str, Any]) -> list[str]:
    notes = {
        costs.COST_HEADING: costs.cost_notes,
        costs.SURFACE_HEADING: costs.surface_notes,
        io_table.IO_HEADING: io_table.io_notes,
    }
    return notes[heading](result) if heading in notes else []


def title(result: dict[str, Any]) -> str:
    host = result["host"]
    return (
        f"explorer: {result['scenario']['name']} on {host['hostname']} "
        f"({host['kernel_release']}, {host['cpu_cores']} cores)"
    )


def untrusted(result: dict[str, Any]) -> list[str]:
    """What in the result cannot be trusted as measured: a side whose milestones happened in an
    impossible order (a readiness check that a proxy fooled, say)."""
    found = []
    for name, side in result.get("sides", {}).items():
        check = side.get("startup", {}).get("timeline") or {}
        if check.get("ok") is False:
            found.append(f"the {side_title(side, name)}'s timeline is impossible ({'; '.join(check['problems'][:3])})")
    return found


def notes(result: dict[str, Any]) -> list[str]:
    """Caveats about the whole run, shown under the title: a readiness check that may fire
    early, figures that cannot be trusted."""
    warning = result.get("scenario", {}).get("ready_warning")
    out = [f"Warning: {warning}"] if warning else []
    return out + [
        f"Warning: {text}: claims that read its startup figures are inconclusive" for text in untrusted(result)
    ]


DETAIL_HINT = (
    "(processes seen from the host, startup milestones, time phases, each verdict's evidence and rule, "
    "and the full cost and surface tables: --detail, the Markdown and JSON formats, and the page)"
)


def render(result: dict[str, Any], fmt: str = "table", width: int = fit.NOT_A_TERMINAL, detail: bool = False) -> str:
    """The answer first (claims x sides, the sides that depart and why, the key figures), then
    with `detail` (always in Markdown) every other table; JSON is the document itself."""
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=False)
    result = upgraded(result)
    if fmt == "markdown":
        return _markdown(result)
    parts = [fit.paragraph(title(result), width)]
    parts += [fit.paragraph(note, width) for note in notes(result)]
    skipped = result.get("skipped") or {}
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


def _markdown(result: dict[str, Any]) -> str:
    """Every section, GitHub's tables: the answer first, then everything else."""
    parts = [f"# {title(result)}"]
    parts += [f"\n> {note}" for note in notes(result)]
    skipped = result.get("skipped") or {}
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
