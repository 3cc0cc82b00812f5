"""The level of isolation, seen from inside (the inside probe, explorer/probes/inside/): one row
per fact (what the workload sees of the host) and per escape-relevant operation (what the host
kernel's calls answered), one column per side and user, the native process first; under it how
the probe got into each side, which kernel answered, the cross-check against the host-side seccomp
evaluation (every disagreement said), and where an answer depends on the engine's version."""

from __future__ import annotations

from explorer.document import side_title
from explorer.result import Result
from explorer.result.inside import Compared, InsideRun, InsideSide, InsideView, Operation

INSIDE_HEADING = "The level of isolation, seen from inside (what the workload sees of the host, and reaches)"
CROSS_HEADING = "Cross-check: each operation's call against the workload's seccomp filter, read from the host"
OUTCOME_WORDS = {"reachable": "reached", "succeeded": "worked", "blocked": "blocked", "absent": "absent"}


def measured(result: Result) -> bool:
    """Whether any side (or the native process) ran the inside probe."""
    return result.inside_native is not None or any(s.inside is not None for s in result.sides.values())


def columns(result: Result) -> list[tuple[str, InsideRun | None]]:
    """(column title, the run) of the native process's runs, then every side's, by user."""
    out: list[tuple[str, InsideRun | None]] = []
    if result.inside_native is not None:
        out += [(f"native process\n{run.as_user}", run) for run in result.inside_native.runs]
    for name, side in result.sides.items():
        inside = side.inside
        if inside is None:
            continue
        title = side_title(side, name)
        if not inside.runs:
            out.append((f"{title}\nnot measured", None))
        out += [(f"{title}\n{_short_user(run.as_user)}", run) for run in inside.runs]
    return out


def _short_user(label: str) -> str:
    return label.replace("the workload's user", "workload's user")


def _fact_cell(fact: Compared[object] | None) -> str:
    if fact is None:
        return "-"
    if fact.same_as_host is None:
        return "?" if fact.value is None else "not compared"
    return "= host" if fact.same_as_host else "its own"


def _op_cell(op: Operation | None) -> str:
    if op is None:
        return "-"
    word = OUTCOME_WORDS.get(op.outcome, op.outcome)
    said = op.errno_name or ("SIGSYS" if op.signal is not None else "")
    return f"{word} {said}".strip()


def _views(cols: list[tuple[str, InsideRun | None]]) -> list[InsideView | None]:
    return [run.view if run is not None else None for _, run in cols]


def inside_table(result: Result) -> tuple[list[str], list[list[str]]]:
    """Facts first ("= host": the host's own value, "its own": another), then operations
    ("reached EINVAL": the kernel checked the arguments; "blocked EPERM"; "absent ENOSYS")."""
    cols = columns(result)
    views = _views(cols)
    names = _fact_names(views)
    ops = _op_names(views)
    rows: list[list[str]] = []
    for name in names:
        cells = [_fact_cell(getattr(v.facts, name) if v is not None and v.facts is not None else None) for v in views]
        rows.append([f"fact: {name}", *cells])
    for op_id in ops:
        cells = [_op_cell(next((o for o in v.operations if o.id == op_id), None) if v else None) for v in views]
        rows.append([f"op: {op_id}", *cells])
    rows.append(["who answered", *(v.answered_by or "the host's kernel" if v is not None else "-" for v in views)])
    return ["", *(title for title, _ in cols)], rows


def _fact_names(views: list[InsideView | None]) -> list[str]:
    for v in views:
        if v is not None and v.facts is not None:
            return list(type(v.facts).model_fields)
    return []


def _op_names(views: list[InsideView | None]) -> list[str]:
    seen: dict[str, None] = {}
    for v in views:
        for op in v.operations if v is not None else []:
            seen.setdefault(op.id, None)
    return list(seen)


def cross_check_table(result: Result) -> tuple[list[str], list[list[str]]]:
    """Every cross-checked call of every side: the filter's class, the answer inside, whether
    they agree (a disagreement is marked, never left out)."""
    rows = []
    for name, side in result.sides.items():
        inside = side.inside
        for check in inside.cross_check if inside is not None else []:
            mark = {True: "yes", False: "NO", None: "-"}[check.agrees]
            rows.append([side_title(side, name), check.operation, check.syscall, check.filter, check.inside, mark])
    return ["side", "operation", "system call", "filter", "inside (as root)", "agree"], rows


def inside_notes(result: Result) -> list[str]:
    """How to read the table; each side's delivery, kernel and cross-check; what was not measured."""
    out = [
        (
            "the inside probe (explorer-inside, one static program built from this repository) runs where each "
            "side's workload runs, as the workload's own user and as root inside, and prints what it sees and what "
            "the kernel answers; every call is made so that it cannot change anything (invalid arguments, or a "
            "child that exits at once); facts are set beside the host's own values, read at the same moment"
        ),
        (
            "op cells: reached (the kernel checked the arguments: the call got past every filter, and for a "
            "permission-first call past the capability check too), worked (in a child that exited), blocked "
            "(EPERM/EACCES, a filter's ENOSYS or SIGSYS), absent (the answering kernel has no such call)"
        ),
    ]
    for name, side in result.sides.items():
        inside = side.inside
        if inside is None:
            continue
        title = side_title(side, name)
        if not inside.available:
            out.append(f"{title}: not measured: {inside.reason}")
            continue
        out.append(f"{title}: {inside.delivery}; {inside.answered_by} answered")
        out += _version_notes(title, side.engine.summary, inside)
        if inside.reason:
            out.append(f"{title}: {inside.reason}")
        for run in inside.runs:
            if run.failure is not None:
                out.append(f"{title}, {run.as_user}: {run.failure.error}")
        wrong = [c for c in inside.cross_check if c.agrees is False]
        if wrong:
            out.append(
                f"{title}: {len(wrong)} DISAGREEMENT(S): " + "; ".join(f"{c.operation}: {c.said}" for c in wrong)
            )
        capability = [c.operation for c in inside.cross_check if c.filter == "allowed" and c.inside == "blocked"]
        if capability:
            out.append(
                f"{title}: the filter allows {', '.join(dict.fromkeys(capability))}, yet the kernel refused them inside: "
                "a capability (or an LSM) the side does not give, not the filter"
            )
    return out


def _version_notes(title: str, engine: str | None, inside: InsideSide) -> list[str]:
    root = next((run.view for run in inside.runs if run.view is not None and "root" in run.as_user), None)
    found = []
    for op in root.operations if root is not None else []:
        if op.engine_versions:
            found.append(f"{title}: {op.id} {op.outcome} under {engine or 'its engine'}: {op.engine_versions}")
    return found
