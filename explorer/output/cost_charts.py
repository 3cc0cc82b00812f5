"""The charts of what isolation costs, from the standard load the result holds: each side's
throughput against the native process, and the host system calls per operation by role. As in
explorer/output/charts.py, one function per chart drawing onto a given Axes, each with a
`missing_*` twin saying why it has nothing to show."""

from __future__ import annotations

from typing import Any, NamedTuple

from explorer.document import side_color
from explorer.output import charts, costs
from explorer.result import PathLoad, Result, SideRecord


def _rate(load: PathLoad) -> float | None:
    return costs.median(load, "ops_s") if load.status == "ok" else None


def _roles_under_load(load: PathLoad) -> set[str]:
    roles = set(load.traced.by_role if load.traced is not None else {})
    for one in load.rounds:
        roles |= set(one.host_cpu_by_role_s)
    return roles


class ThroughputRow(NamedTuple):
    """One path of the native reference or of a side under the load, as the chart draws it."""

    side: str  # the side's name, or "native"
    title: str
    load: PathLoad
    path: str | None  # the path's name where the load names its paths
    tcg: bool  # its figures are an emulator's
    rate: float | None


def network_path(row: ThroughputRow, side: SideRecord | None) -> str:
    """How the load client on the host reached the workload, from what the document recorded:
    the path's own name where the load names it, else what its host processes say."""
    if row.path:
        where = f": {row.load.endpoint}" if row.load.endpoint else ""
        return f"{row.path}{where}"
    if row.side == "native":
        return "loopback in its own network namespace"
    if "proxy" in _roles_under_load(row.load):
        return "127.0.0.1, relayed by Docker's userland proxy"
    if side is not None and side.kind == "vm":
        return "127.0.0.1, forwarded into the guest by the VMM"
    return "127.0.0.1, the published port"


def _no_load(result: Result) -> str:
    if result.load is None:
        return "no load was run (the run was made with --no-load, or by an explorer older than the load phase)"
    native = result.load.native
    return f"the native reference was {native.status}: {native.reason or 'no reason recorded'}"


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _why_not(load: PathLoad) -> str:
    return _short(f"{load.status}: {load.reason or 'no reason recorded'}")


def throughput_rows(result: Result) -> list[ThroughputRow]:
    """Every path of the native reference and of every side with a load (costs.paths_of: a
    container's published port and own netns apart), with its name where the load names its
    paths, and the side's TCG note where it has one."""
    loads = {name: load for name, _, load in costs.rows_of(result)}
    rows = []
    for row in costs.paths_of(result):
        side = loads[row.side]
        path = row.path if side.paths else side.path  # a result saved before loads had paths: as it was
        title = row.title.removesuffix(costs.TCG)
        rows.append(ThroughputRow(row.side, title, row.load, path, bool(side.note), _rate(row.load)))
    return rows


def missing_throughput(result: Result) -> str | None:
    rows = throughput_rows(result)
    if not any(row.rate for row in rows if row.side == "native"):
        return _no_load(result)
    if not any(row.rate for row in rows if row.side != "native"):
        why = [f"{row.title}: {row.load.reason or row.load.status}" for row in rows if row.side != "native"]
        return "no side completed the load" + (f" ({'; '.join(why[:2])})" if why else "")
    return None


def throughput(ax: Any, result: Result) -> None:
    """The same load on every side: ops/s against the native process, a dashed line at 1.0;
    each row names the network path the client took; TCG sides hatched; a side without
    figures has its row, with the reason."""
    rows = throughput_rows(result)
    base = next(row.rate for row in rows if row.side == "native")
    assert base is not None  # drawn only when the native process has a rate (missing_throughput says why not)
    labels = []
    for y, row in enumerate(rows):
        side = result.sides.get(row.side)
        rate = row.rate
        if rate:
            color = "#333333" if side is None else side_color(side)
            ax.barh(y, rate / base, color=color, alpha=0.85, hatch="//" if row.tcg else None, edgecolor="white")
        charts.note_right(ax, y, f"{rate / base:.2f}x ({rate:,.0f} ops/s)" if rate else _why_not(row.load))
        labels.append(f"{row.title}{costs.TCG if row.tcg else ''}\n{network_path(row, side)}")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    charts.bars_like(ax, labels)
    ax.tick_params(axis="y", labelsize=charts.NOTE_SIZE)
    ax.set_xlim(left=0)
    ax.set_xlabel("throughput under the same load, against the native process (dashed line: 1.0); hatched: TCG")


# ---- host system calls per operation --------------------------------------------------------


def syscall_rows(result: Result) -> list[tuple[str, list[tuple[str, float]], float | None, str]]:
    """(row label, [(role, calls per operation)], total per operation, why there are none) for
    the native reference and every side with a load."""
    rows: list[tuple[str, list[tuple[str, float]], float | None, str]] = []
    for _name, title, load in costs.rows_of(result):
        traced = load.traced
        label = title + (costs.TCG if load.note else "")
        if load.status != "ok":
            rows.append((label, [], None, _why_not(load)))
            continue
        by_role = [(r, f.per_op) for r, f in (traced.by_role if traced is not None else {}).items() if f.per_op]
        reason = traced.reason if traced is not None else None
        why = "" if by_role else _short(f"not counted: {reason or 'no calls recorded'}")
        rows.append((label, by_role, traced.per_op if traced is not None else None, why))
    return rows


def missing_syscalls(result: Result) -> str | None:
    rows = syscall_rows(result)
    if any(by_role for _, by_role, _, _ in rows):
        return None
    loads = [load for _, _, load in costs.rows_of(result)]
    if all(load.status != "ok" for load in loads):
        return _no_load(result)
    reasons = [load.traced.reason for load in loads if load.status == "ok" and load.traced is not None]
    return f"no round was counted: {next((r for r in reasons if r), 'no reason recorded')}"


def syscalls(ax: Any, result: Result) -> None:
    """Host system calls per operation under the load, stacked by the role that made them."""
    rows = syscall_rows(result)
    roles: list[str] = []
    for y, (_, by_role, total, why) in enumerate(rows):
        left = 0.0
        for role, per_op in by_role:
            if role not in roles:
                roles.append(role)
            ax.barh(y, per_op, left=left, color=charts.role_color(role, roles), edgecolor="white")
            left += per_op
        charts.note_right(ax, y, why or f"{total if total is not None else left:.2f} calls/op")
    charts.bars_like(ax, [row[0] for row in rows])
    ax.set_xlim(left=0)
    ax.set_xlabel("host system calls per operation, by the host process's role (a VM guest's own calls are not seen)")
    charts.legend_below(ax, [charts.patch(facecolor=charts.role_color(r, roles), label=r) for r in roles], columns=6)
