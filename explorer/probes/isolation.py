"""What separates the workload's main host process from the host: namespaces, capabilities,
seccomp. For a VM this is the VMM process; the guest itself sits behind the hypervisor."""

from __future__ import annotations

import os
from typing import Any

from explorer.probes import ProbeContext
from explorer.probes.hostproc import (
    NAMESPACES,
    SECCOMP_MODES,
    capabilities,
    namespaces,
    status_fields,
)


def probe(ctx: ProbeContext) -> dict[str, Any]:
    pid, subject = _subject(ctx)
    if pid is None:
        return {"available": False, "reason": "no host process to inspect"}
    mine = namespaces(os.getpid())
    theirs = namespaces(pid)
    status = status_fields(pid)
    caps = capabilities(status.get("CapEff", "0"))
    return {
        "available": True,
        "host_pid": pid,
        "subject": subject,
        "namespaces_differing": [ns for ns in NAMESPACES if theirs[ns] and theirs[ns] != mine[ns]],
        "namespaces_shared": [ns for ns in NAMESPACES if theirs[ns] and theirs[ns] == mine[ns]],
        "capabilities": caps,
        "capability_count": len(caps),
        "seccomp": SECCOMP_MODES.get(status.get("Seccomp", ""), "unknown"),
    }


def _subject(ctx: ProbeContext) -> tuple[int | None, str]:
    """The host process closest to the workload: its own init, else the runtime process of
    the side's main role (gVisor's sandbox, the VMM)."""
    if ctx.workload_pids:
        return min(ctx.workload_pids), "workload"
    for role in (*ctx.roles, *sorted(set(ctx.runtime_pids.values()))):
        pids = [pid for pid, r in ctx.runtime_pids.items() if r == role]
        if pids:
            return min(pids), role
    return None, ""
