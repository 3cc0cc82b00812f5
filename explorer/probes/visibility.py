"""Are the workload's processes visible in the host's process table, and as what?"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psutil

from explorer.probes import ProbeContext
from explorer.probes.hostproc import describe, named


def probe(ctx: ProbeContext) -> dict[str, Any]:
    names = set(ctx.scenario.workload.processes)
    stop_at = set(ctx.runtime_pids)
    workload = [d for d in (describe(pid, stop_at) for pid in ctx.workload_pids) if d]
    runtime = [{**d, "role": ctx.runtime_pids[d["host_pid"]]}
               for d in (describe(pid) for pid in ctx.runtime_pids) if d]
    # What `ps -e | grep NAME` finds on the host, and whether each one belongs to this target.
    ours = {d["host_pid"] for d in workload}
    grep_view = [
        {"host_pid": p.pid, "name": p.info["name"], "this_target": p.pid in ours or _under(p, stop_at)}
        for p in named(names)
    ]
    visible = [d for d in workload if d["name"] in names]
    return {
        "process_names": sorted(names),
        "visible_on_host": bool(visible),
        "workload_processes": workload,
        "named_on_host": grep_view,
        "runtime_processes": runtime,
        "runtime_by_role": _by_role(runtime),
        "inside": _inside(ctx, names),
    }


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
        "explorer_pids_inside": ctx.guest.agent_pids,  # the VM's init and watcher, not counted
    }


def _by_role(runtime: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runtime processes grouped by role, in order of appearance: {role, count, pids}."""
    roles: dict[str, list[int]] = {}
    for proc in runtime:
        roles.setdefault(proc["role"], []).append(proc["host_pid"])
    return [{"role": role, "count": len(pids), "pids": " ".join(map(str, pids))} for role, pids in roles.items()]
