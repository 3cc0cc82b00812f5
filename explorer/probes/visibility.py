"""Are the workload's processes visible in the host's process table, and as what?"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psutil

from explorer.model import GuestView
from explorer.probes import ProbeContext
from explorer.probes.hostproc import describe, named

COMM_LEN = 15  # the kernel keeps a process name (comm) to 15 characters


def name_matches(name: str, wanted: set[str]) -> bool:
    """`name` (a comm) is one of `wanted`, or a longer wanted name cut to comm's length."""
    return name in wanted or (len(name) == COMM_LEN and any(w.startswith(name) for w in wanted))


def unmatched_names(guest: GuestView | None, names: tuple[str, ...] | list[str], side: str) -> str | None:
    """Why the scenario's process names match nothing that runs in the guest, or None.

    Every visibility figure is a search for these names: one that matches nothing would judge
    "not visible" from a typo, so it is a failure (with what does run), never a verdict."""
    if guest is None:
        return None
    user = [p for p in guest.processes if not p.kernel_thread]
    if any(name_matches(p.name, set(names)) for p in user):
        return None
    wanted = ", ".join(names)
    first = next((p for p in user if p.pid == 1), None)
    if first is not None:
        return f"no process named {wanted} runs in the {side}; its PID 1 is {first.name}"
    running = ", ".join(sorted({p.name for p in user})) or "nothing but explorer's own"
    return f"no process named {wanted} runs in the {side}; it runs {running}"


def probe(ctx: ProbeContext) -> dict[str, Any]:
    names = set(ctx.scenario.workload.processes)
    stop_at = set(ctx.runtime_pids)
    workload = [d for d in (describe(pid, stop_at) for pid in ctx.workload_pids) if d]
    runtime = [{**d, "role": ctx.runtime_pids[d["host_pid"]]} for d in (describe(pid) for pid in ctx.runtime_pids) if d]
    # What `ps -e | grep NAME` finds on the host, and whether each one belongs to this target.
    ours = {d["host_pid"] for d in workload}
    grep_view = [
        {"host_pid": p.pid, "name": p.info["name"], "this_target": p.pid in ours or _under(p, stop_at)}
        for p in named(names)
    ]
    visible = [d for d in workload if d["name"] in names]
    out = {
        "process_names": sorted(names),
        "visible_on_host": bool(visible),
        "workload_processes": workload,
        "named_on_host": grep_view,
        "runtime_processes": runtime,
        "runtime_by_role": _by_role(runtime),
        "inside": _inside(ctx, names),
    }
    if ctx.guest is None and not ctx.facts.get("process_named"):
        # Nothing confirmed that the names are the workload's: the searches by name prove
        # nothing, so their figures are unknown (claims reading them are inconclusive).
        reason = f"no guest view confirmed that {', '.join(sorted(names))} is the workload's name"
        out.update(visible_on_host=None, named_on_host=None, names_unconfirmed=reason)
    return out


def _under(proc: psutil.Process, ancestors: set[int]) -> bool:
    try:
        return any(parent.pid in ancestors for parent in proc.parents())
    except psutil.Error:
        return False


def _inside(ctx: ProbeContext, names: set[str]) -> dict[str, Any]:
    """What a process listing inside the guest shows."""
    if ctx.guest is None:
        return {"available": False, "reason": ctx.guest_error}
    procs = ctx.guest.processes
    user = [p for p in procs if not p.kernel_thread]
    os_names = Counter(p.name for p in user if p.name not in names)
    return {
        "available": True,
        "channel": ctx.guest.channel,
        "processes": [p.__dict__ for p in procs],
        "user_process_count": len(user),
        "kernel_thread_count": len(procs) - len(user),
        "workload_pids_inside": sorted(p.pid for p in user if p.name in names),
        # the guest's own userspace besides the workload: an OS's services, or nothing
        "os_process_count": sum(os_names.values()),
        "os_processes": [{"name": n, "count": c} for n, c in sorted(os_names.items(), key=lambda i: (-i[1], i[0]))],
        "explorer_pids_inside": ctx.guest.agent_pids,  # explorer's own (the VM's init, an ssh session), not counted
        "explorer_processes_inside": ctx.guest.agent_names,
    }


def _by_role(runtime: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runtime processes grouped by role, in order of appearance: {role, count, pids}."""
    roles: dict[str, list[int]] = {}
    for proc in runtime:
        roles.setdefault(proc["role"], []).append(proc["host_pid"])
    return [{"role": role, "count": len(pids), "pids": " ".join(map(str, pids))} for role, pids in roles.items()]
