"""What isolation costs, read from the result document: the same standard load on the native
reference and on every side. Two tables: the cost, one row per path a side was loaded on (its
published port, its own network namespace, a VM's hostfwd: throughput and its ratio to the
native process and to the first container side's same path, the client's p99, the host CPU the
side's host processes spent per 1000 operations, the client's own apart), and the host kernel's
surface the side reached under it, one row per side (system calls per operation and by whom,
distinct calls, the most frequent, each role's seccomp filter as the calls it allows, and the
calls the side may reach against those it used). A row that has no figures says why in a
numbered note under the table, not in a cell. Under the cost table: each side's breakdown in
words (the isolation apart from the path), and where each load phase's time went."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from explorer.document import side_title
from explorer.result import (
    FilterFigures,
    FioDetail,
    PathLoad,
    PhaseSplit,
    Result,
    RoleCalls,
    Seccomp,
    SideLoad,
    SideRecord,
    Traced,
)

REFERENCE = "native process"
COST_HEADING = "What isolation costs (the same load on every side, from the host)"
SURFACE_HEADING = "How much of the host's kernel each side reaches (system calls the host served under the load)"
COST_WIDTHS = [16, 16, 15, 8, 10, 10, 10, 10]
SURFACE_WIDTHS = [16, 8, 8, 18, 28, 24, 10]
TCG = " (TCG)"


def _figure(load: PathLoad | None, key: str) -> float | None:
    spread = getattr(load.summary, key) if load is not None and load.summary is not None else None
    return spread.median if spread is not None else None


def median(load: PathLoad | None, key: str) -> float | None:
    """The median over the measured rounds of one figure of a load (None when absent): ops_s,
    p50_ms, p99_ms, latency_avg_ms, host_cpu_s_per_1k_ops or client_cpu_s."""
    return _figure(load, key)


def native_rate(result: Result) -> float | None:
    """The native reference's median ops/s, the floor every ratio is taken against."""
    return _figure(result.load.native if result.load else None, "ops_s")


def rows_of(result: Result) -> list[tuple[str, str, SideLoad]]:
    """(name, title, load figures) of the native reference, then every side that has a load."""
    found = []
    if result.load is not None:
        found.append(("native", REFERENCE, result.load.native))
    for name, side in result.sides.items():
        if side.load is not None:
            found.append((name, side_title(side, name), side.load))
    return found


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def _rate(load: PathLoad) -> str:
    spread = load.summary.ops_s if load.summary is not None else None
    if spread is None:
        return "-"
    return f"{spread.median:,.0f}\n{spread.min:,.0f}-{spread.max:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _latency(load: PathLoad) -> str:
    """The client's p99; pgbench's average where it gives no percentile; fio's per job, in the
    I/O table (one latency over 4 KiB and 1 MiB I/Os would say nothing)."""
    p99, avg = _figure(load, "p99_ms"), _figure(load, "latency_avg_ms")
    if p99 is not None:
        return _ms(p99)
    if avg is not None:
        return f"avg {_ms(avg)}"
    per_job = any(isinstance(r.detail, FioDetail) for r in load.rounds)
    return "I/O table" if per_job else "-"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _title(title: str, load: SideLoad) -> str:
    return title + (TCG if load.note else "")


def _not_measured(load: PathLoad) -> str | None:
    """Why a row has no figures (None: it has them)."""
    if load.status != "ok":
        return f"{load.status}: {load.reason or 'no reason was recorded'}"
    return None


def _why_rows(result: Result, why: Callable[[SideLoad], str | None]) -> tuple[dict[str, int], list[str]]:
    """Numbered reasons for the rows `why` says have no figures: {name: note number}, the notes."""
    numbers: dict[str, int] = {}
    texts: list[str] = []
    for name, title, load in rows_of(result):
        reason = why(load)
        if reason:
            texts.append(f"[{len(texts) + 1}] {title}: {reason}")
            numbers[name] = len(texts)
    return numbers, texts


class PathRow(NamedTuple):
    """One path of one side (or of the native reference) under the load."""

    side: str  # the side's name, or "native"
    path: str  # the path's name ("own netns (nsenter)")
    ratio: float | None  # its median ops/s against the native reference's (None: either is missing)
    title: str  # the side's title, "(TCG)" added where its figures are an emulator's
    ops_s: float | None
    relay: str | None  # what relays every byte on this path (docker-proxy), None: nothing
    load: PathLoad  # the path's figures


def _paths(load: SideLoad) -> dict[str, PathLoad]:
    """A load's paths by name; a result saved before loads had paths has one, its only figures."""
    return dict(load.paths) or {load.path or "the side's port": load}


def paths_of(result: Result) -> list[PathRow]:
    """Every path of the native reference and of every side that has a load, in the document's
    order, each with its throughput against the native reference's: what the cost table, the
    plot and the results page show."""
    native = native_rate(result)
    out = []
    for name, title, load in rows_of(result):
        for path, figures in _paths(load).items():
            rate = _figure(figures, "ops_s") if figures.status == "ok" else None
            out.append(
                PathRow(
                    name,
                    path,
                    rate / native if rate and native else None,
                    _title(title, load),
                    rate,
                    figures.relay,
                    figures,
                )
            )
    return out


def _why_paths(rows: list[PathRow]) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Numbered reasons for the paths that have no figures: {(side, path): number}, the notes."""
    numbers: dict[tuple[str, str], int] = {}
    texts: list[str] = []
    for row in rows:
        reason = _not_measured(row.load)
        if reason:
            texts.append(f"[{len(texts) + 1}] {row.title}, {row.path}: {reason}")
            numbers[(row.side, row.path)] = len(texts)
    return numbers, texts


def _kind(result: Result, name: str) -> str | None:
    side = result.sides.get(name)
    return side.kind if side is not None else None


def costs_table(result: Result) -> tuple[list[str], list[list[str]]]:
    rows = paths_of(result)
    first = next((r for r in rows if _kind(result, r.side) == "container" and r.ops_s), None)
    first_rates = {r.path: r.ops_s for r in rows if first and r.side == first.side}
    numbers, _ = _why_paths(rows)
    out = []
    for index, row in enumerate(rows):
        side = row.title if index == 0 or rows[index - 1].side != row.side else ""  # once per side
        if (row.side, row.path) in numbers:
            status = row.load.status
            out.append([side, row.path, f"{status} [{numbers[(row.side, row.path)]}]", *["-"] * 5])
            continue
        load = row.load
        latency = _latency(load)
        out.append(
            [
                side,
                row.path,
                _rate(load),
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
                ratio(row.ops_s, first_rates.get(row.path)) if row.side != "native" else "-",
                latency,
                _cpu(_figure(load, "host_cpu_s_per_1k_ops")),
                _cpu(_figure(load, "client_cpu_s")),
            ]
        )
    headers = [
        "side",
        "path",
        "ops/s\n(range)",
        "vs\nnative",
        "vs first\ncontainer",
        "p99",
        "host CPU\n/1k ops",
        "client CPU\n/round",
    ]
    return headers, out


def breakdown(rows: list[PathRow]) -> str | None:
    """One side's cost in words: the isolation on a path nothing relays (its own network
    namespace), and what a relayed path (the published port) adds; or its only path, named."""
    measured = [r for r in rows if r.ratio is not None]
    if not measured:
        return None
    title = measured[0].title
    inside = next((r for r in measured if r.load.inside), None)
    if inside is not None:  # the client in the guest shares its vCPU: no path apart from the isolation
        measured = [r for r in measured if r is not inside]
        said = f"the client inside the guest reaches {inside.ratio:.2f}x native, sharing the guest's vCPU with the workload"
        others = breakdown(measured) if measured else None
        return f"{others}; {said} (its figure is the guest's CPU, not a path's)" if others else f"{title}: {said}"
    direct = next((r for r in measured if not r.relay), None)
    relayed = next((r for r in measured if r.relay), None)
    if direct and relayed:
        assert direct.ratio is not None and relayed.ratio is not None  # both measured
        isolation = (
            f"the isolation costs {1 - direct.ratio:.2f}x"
            if direct.ratio < 1
            else "the isolation shows no cost here (at or above native)"
        )
        rest = direct.ratio - relayed.ratio
        port = (
            f"{relayed.path} costs the rest, {rest:.2f}x ({relayed.relay} relays every byte)"
            if rest > 0
            else (f"{relayed.path} costs nothing more here")
        )
        return (
            f"{title}: {direct.ratio:.2f}x native on {direct.path}, {relayed.ratio:.2f}x on {relayed.path}: "
            f"{isolation}; {port}"
        )
    only = measured[0]
    if len(measured) == 1 and only.relay:
        return (
            f"{title}: {only.ratio:.2f}x native, on {only.path} only ({only.relay} relaying every byte): the isolation "
            "and that path together, which no other path from the host separates"
        )
    return "; ".join(f"{title}: {r.ratio:.2f}x native on {r.path}" for r in measured)


def breakdowns(result: Result) -> list[str]:
    by_side: dict[str, list[PathRow]] = {}
    for row in paths_of(result):
        if row.side != "native":
            by_side.setdefault(row.side, []).append(row)
    return [text for rows in by_side.values() if (text := breakdown(rows))]


SPLIT_WORDS = {
    "prepare_s": "the client's preparation",
    "calibration_s": "calibration",
    "measured_rounds_s": "measured rounds",
    "idle_window_s": "idle window",
    "discovery_s": "discovery runs",
    "traced_rounds_s": "traced rounds",
    "perf_start_s": "perf's start",
    "perf_stop_s": "perf's stop",
    "keeper_s": "the tracepoints' teardown",
    "other_s": "other",
}


def phase_note(title: str, split: PhaseSplit) -> str:
    """Where one load phase's time went, against what its rounds and idle window needed."""
    seconds = split.model_dump()
    parts = ", ".join(f"{words} {seconds[key]:.1f} s" for key, words in SPLIT_WORDS.items() if seconds[key])
    ratio_text = (
        f", {split.ratio:.2f}x the {split.needed_s:.1f} s its rounds and idle window need"
        if split.ratio and split.needed_s is not None
        else ""
    )
    return f"{title}: {split.total_s:.1f} s{ratio_text} ({parts})"


def phase_notes(result: Result) -> list[str]:
    out = []
    for _name, title, load in rows_of(result):
        split = load.phase_split
        if split:
            out.append(phase_note(title, split))
    return ["the load phase's own time, per side: " + "; ".join(out)] if out else []


def path_notes(result: Result) -> list[str]:
    """What carries the load on each path, said once per kind of description (the ports and
    PIDs of the first side that has it)."""
    seen: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for row in paths_of(result):
        description = row.load.description
        if not description:
            continue
        key = f"{row.path}: " + re.sub(r"\d+", "N", description)
        seen.setdefault(key, []).append(row.title)
        texts.setdefault(key, f"{row.path} ({{sides}}): {description}")
    return [texts[key].format(sides=", ".join(titles)) for key, titles in seen.items()]


def counted(load: PathLoad) -> Traced | None:
    """The load's traced round, where it was counted (None: not counted, or not available)."""
    return load.traced if load.traced is not None and load.traced.available else None


def _surface_missing(load: PathLoad) -> str | None:
    missing = _not_measured(load)
    if missing:
        return missing
    if counted(load) is None:
        reason = load.traced.reason if load.traced is not None else None
        return f"not measured: {reason or 'no counted round'}"
    return None


def _roles(traced: Traced) -> str:
    """Whose calls reach the host, per operation, busiest first (roles that made none left out)."""
    roles = sorted(
        ((role, r) for role, r in traced.by_role.items() if r.calls),
        key=lambda item: -(item[1].per_op or 0),
    )
    parts = []
    for role, r in roles:
        exits = f", {r.kvm_exits:,} VM exits" if r.kvm_exits is not None else ""
        parts.append(f"{role} {r.per_op:.2f}{exits}" if r.per_op is not None else role)
    return "\n".join(parts) or "-"


def _seccomp(load: PathLoad, traced: Traced) -> str:
    """Each role's seccomp: the calls its filters allow (+ for some arguments only) where they
    were read; a document without them (an older explorer's) gives the mode and filter count."""
    roles = load.seccomp.by_role if load.seccomp is not None else {}
    if roles:
        return "\n".join(f"{role}: {_allowed(figures)}" for role, figures in roles.items())
    seen: dict[str, str] = {}
    for proc in traced.processes:
        mode = proc.seccomp or "unknown"
        filters = proc.seccomp_filters
        seen.setdefault(proc.role, f"{mode} ({filters})" if mode == "filter" and filters else mode)
    return "\n".join(f"{role}: {mode}" for role, mode in seen.items()) or "-"


def _allowed(figures: FilterFigures) -> str:
    """`no filter`, `strict, 4`, `filter, 301 +7`; `>=` where some of the role's processes were not read."""
    if figures.allowed is None:
        return f"{figures.mode or 'unknown'}, not read"
    if figures.mode == "disabled":
        return "no filter"
    at_least = "" if figures.read else ">="
    extra = f" +{figures.conditional}" if figures.conditional else ""
    return f"{figures.mode}, {at_least}{figures.allowed}{extra}"


def _reach(load: PathLoad) -> str:
    """What the side may reach (its roles' union) against what it used."""
    reach = load.seccomp.reach if load.seccomp is not None else None
    if reach is None or reach.allowed is None:
        return "-" if reach is None else "not read"
    at_least = "" if reach.read else ">="
    extra = f" +{reach.conditional}" if reach.conditional else ""
    return f"{at_least}{reach.allowed}{extra}" + ("" if reach.used is None else f"\nused {reach.used}")


def _per_op(count: int, ops: int | None) -> str:
    return f"{count / ops:.2f}" if ops else "?"


def surface_table(result: Result) -> tuple[list[str], list[list[str]]]:
    numbers, _ = _why_rows(result, _surface_missing)
    rows = []
    for name, title, load in rows_of(result):
        traced = counted(load)
        if name in numbers or traced is None:
            rows.append([_title(title, load), f"- [{numbers.get(name, '?')}]", "-", "-", "-", "-", "-"])
            continue
        top = ", ".join(f"{call} {_per_op(count, traced.ops)}" for call, count in list(traced.syscalls.items())[:4])
        per_op = traced.per_op
        rows.append(
            [
                _title(title, load),
                "-" if per_op is None else f"{per_op:.2f}",
                "-" if traced.distinct is None else str(traced.distinct),
                _roles(traced),
                top,
                _seccomp(load, traced),
                _reach(load),
            ]
        )
    headers = [
        "side",
        "host calls\n/op",
        "distinct\ncalls",
        "by whom (calls/op)",
        "most frequent (calls/op)",
        "seccomp by role\n(calls allowed\n+ for some args)",
        "may reach\n/ used",
    ]
    return headers, rows


def cost_notes(result: Result) -> list[str]:
    """How to read the cost table, from what this result holds: the client, the paths, each
    side's breakdown, where each load phase's time went; then why a row has no figures."""
    load = result.load
    if load is None:
        return []
    settings = load.settings
    rounds = (
        f"{settings.rounds} rounds of {settings.seconds_per_round:g} s per path"
        if settings is not None
        else "rounds per path"
    )
    out = [
        (
            f"client: {load.client}; {rounds} (median and range), from the host, on every path a side offers, "
            "all on a loopback address"
        ),
        "the client runs on the same host and competes for its CPU: its own CPU is shown apart",
    ]
    note = next((s.load.note for s in result.sides.values() if s.load is not None and s.load.note), None)
    if note:
        out.append(f"(TCG): {note}")
    if any(_roles_of(s).get("proxy") for s in result.sides.values()):
        out.append("a container's published port goes through Docker's userland proxy (role proxy), counted with it")
    out += path_notes(result) + breakdowns(result) + phase_notes(result)
    return out + _why_paths(paths_of(result))[1]


def surface_notes(result: Result) -> list[str]:
    if result.load is None:
        return []
    traced = next((t for _, _, load in rows_of(result) if (t := counted(load)) is not None), None)
    out = []
    if traced:
        out.append(
            f"counted by the host's kernel in one more round of the same load (not a measured one: counting slows it): "
            f"{traced.method}; the idle calls of the window around the client's run are taken out at each role's "
            "own idle rate"
        )
    out.append(
        "what it cannot see: a VM guest's own system calls are served by the guest's kernel (under TCG its work is "
        "QEMU's user code, under KVM VM exits, which are no system calls); gVisor's workload calls are caught by the "
        "Sentry (ptrace platform) before the host's kernel serves them, so its stubs show next to none"
    )
    return out + unnamed_notes(result) + _filter_notes(result) + _why_rows(result, _surface_missing)[1]


def _filter_notes(result: Result) -> list[str]:
    """How to read the two seccomp columns, from what this result holds, then what was not read and why."""
    read = [
        (title, load.seccomp)
        for _, title, load in rows_of(result)
        if load.seccomp is not None and load.seccomp.available
    ]
    out = _filter_legend(read) if read else []
    for _, title, load in rows_of(result):
        found = load.seccomp
        if found is None:
            continue
        if not found.available:
            out.append(f"{title}: seccomp not read: {found.reason}")
        out += [f"{title}, {role}: {f.reason}" for role, f in found.by_role.items() if f.reason]
    return out


def _filter_legend(read: list[tuple[str, Seccomp]]) -> list[str]:
    first = read[0][1]
    whose = "; ".join(
        f"{title}: {', '.join(found.reach.roles if found.reach else []) or 'none found'}" for title, found in read
    )
    by_role = (
        f"seccomp by role: the calls each role's filters allow outright, + those they allow for some arguments only, "
        f"of the {first.calls} {first.arch} system calls libseccomp names; no filter allows all of them "
        f"({first.method})"
    )
    reach = (
        "may reach / used: the union of what those filters allow over the roles whose calls the host's kernel serves "
        f"for the workload ({whose}), against the distinct calls those roles made in the counted round; >= where a "
        "process could not be read (the figure is over those read)"
    )
    caveat = (
        "fewer calls allowed is not less of the kernel reached: one allowed call (an ioctl on a device, bpf) can "
        "reach more kernel code than many others (Anjali et al., VEE 2020)"
    )
    return [by_role, reach, caveat]


def _roles_of(side: SideRecord) -> dict[str, RoleCalls]:
    traced = side.load.traced if side.load is not None else None
    return traced.by_role if traced is not None else {}


def unnamed_notes(result: Result) -> list[str]:
    """Calls a traced round counted without a name (of a name no earlier window of the side saw):
    in every total, not among the distinct calls, which are at least those named."""
    found = [
        f"{row.title}, {row.path}: {traced.unnamed_calls:,} of {traced.calls or 0:,}"
        for row in paths_of(result)
        if (traced := counted(row.load)) is not None and traced.unnamed_calls
    ]
    if not found:
        return []
    return [
        "calls counted without a name (a call the side's idle window and discovery run did not make): "
        + "; ".join(found)
        + "; they are in the totals and per operation, and the distinct calls are at least those named"
    ]
