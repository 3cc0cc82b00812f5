"""The charts of what isolation costs, from the standard load the result holds: each side's
throughput against the native process, and the host system calls per operation by role. As in
explorer/output/charts.py, one function per chart drawing onto a given Axes, each with a
`missing_*` twin saying why it has nothing to show."""

from __future__ import annotations

from typing import Any

from explorer.document import side_color
from explorer.output import charts, costs


def _rate(load: dict[str, Any]) -> float | None:
    return ((load.get("summary") or {}).get("ops_s") or {}).get("median") if load.get("status") == "ok" else None


def _roles_under_load(load: dict[str, Any]) -> set[str]:
    roles = set((load.get("traced") or {}).get("by_role") or {})
    for one in load.get("rounds") or []:
        roles |= set(one.get("host_cpu_by_role_s") or {})
    return roles


def network_path(name: str, side: dict[str, Any], load: dict[str, Any]) -> str:
    """How the load client on the host reached the workload, from what the document recorded:
    the path's own name where the load names it, else what its host processes say."""
    if load.get("path"):
        where = f": {load['endpoint']}" if load.get("endpoint") else ""
        return f"{load['path']}{where}"
    if name == "native":
        return "loopback in its own network namespace"
    if "proxy" in _roles_under_load(load):
        return "127.0.0.1, relayed by Docker's userland proxy"
    if side.get("kind") == "vm":
        return "127.0.0.1, forwarded into the guest by the VMM"
    return "127.0.0.1, the published port"


def _no_load(result: dict[str, Any]) -> str:
    load = result.get("load")
    if not load:
        return "no load was run (the run was made with --no-load, or by an explorer older than the load phase)"
    native = load.get("native") or {}
    return (
        f"the native reference was {native.get('status', 'not measured')}: {native.get('reason', 'no reason recorded')}"
    )


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _why_not(load: dict[str, Any]) -> str:
    return _short(f"{load.get('status', 'not measured')}: {load.get('reason', 'no reason recorded')}")


def throughput_rows(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], float | None]]:
    """(name, title, load, ops/s or None) of every path of the native reference and of every side
    with a load (costs.paths_of: a container's published port and own netns apart); the path's
    figures carry its name, and the side's TCG note where it has one."""
    loads = {name: load for name, _, load in costs.rows_of(result)}
    rows = []
    for row in costs.paths_of(result):
        figures = {**row.load, "note": loads[row.side].get("note")}
        if loads[row.side].get("paths"):  # a result saved before loads had paths: described as it was
            figures["path"] = row.path
        rows.append((row.side, row.title.removesuffix(costs.TCG), figures, _rate(figures)))
    return rows


def missing_throughput(result: dict[str, Any]) -> str | None:
    rows = throughput_rows(result)
    if not any(rate for name, _, _, rate in rows if name == "native"):
        return _no_load(result)
    if not any(rate for name, _, _, rate in rows if name != "native"):
        why = [f"{t}: {load.get('reason', load.get('status'))}" for n, t, load, _ in rows if n != "native"]
        return "no side completed the load" + (f" ({'; '.join(why[:2])})" if why else "")
    return None


def throughput(ax: Any, result: dict[str, Any]) -> None:
    """The same load on every side: ops/s against the native process, a dashed line at 1.0;
    each row names the network path the client took; TCG sides hatched; a side without
    figures has its row, with the reason."""
    rows = throughput_rows(result)
    base = next(rate for name, _, _, rate in rows if name == "native")
    assert base is not None  # drawn only when the native process has a rate (missing_throughput says why not)
    labels = []
    for y, (name, title, load, rate) in enumerate(rows):
        side = result.get("sides", {}).get(name, {})
        tcg = bool(load.get("note"))
        if rate:
            color = "#333333" if name == "native" else side_color(side)
            ax.barh(y, rate / base, color=color, alpha=0.85, hatch="//" if tcg else None, edgecolor="white")
        charts.note_right(ax, y, f"{rate / base:.2f}x ({rate:,.0f} ops/s)" if rate else _why_not(load))
        labels.append(f"{title}{costs.TCG if tcg else ''}\n{network_path(name, side, load)}")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    charts.bars_like(ax, labels)
    ax.tick_params(axis="y", labelsize=charts.NOTE_SIZE)
    ax.set_xlim(left=0)
    ax.set_xlabel("throughput under the same load, against the native process (dashed line: 1.0); hatched: TCG")


# ---- host system calls per operation --------------------------------------------------------


def syscall_rows(result: dict[str, Any]) -> list[tuple[str, list[tuple[str, float]], float | None, str]]:
    """(row label, [(role, calls per operation)], total per operation, why there are none) for
    the native reference and every side with a load."""
    rows: list[tuple[str, list[tuple[str, float]], float | None, str]] = []
    for _name, title, load in costs.rows_of(result):
        traced = load.get("traced") or {}
        label = title + (costs.TCG if load.get("note") else "")
        if load.get("status") != "ok":
            rows.append((label, [], None, _why_not(load)))
            continue
        by_role = [(r, f["per_op"]) for r, f in (traced.get("by_role") or {}).items() if f.get("per_op")]
        why = "" if by_role else _short(f"not counted: {traced.get('reason', 'no calls recorded')}")
        rows.append((label, by_role, traced.get("per_op"), why))
    return rows


def missing_syscalls(result: dict[str, Any]) -> str | None:
    rows = syscall_rows(result)
    if any(by_role for _, by_role, _, _ in rows):
        return None
    loads = [load for _, _, load in costs.rows_of(result)]
    if all(load.get("status") != "ok" for load in loads):
        return _no_load(result)
    reasons = [(load.get("traced") or {}).get("reason") for load in loads if load.get("status") == "ok"]
    return f"no round was counted: {next((r for r in reasons if r), 'no reason recorded')}"


def syscalls(ax: Any, result: dict[str, Any]) -> None:
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
