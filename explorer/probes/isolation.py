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
    pids = ctx.workload_pids or ctx.runtime_pids
    if not pids:
        return {"available": False, "reason": "no host process to inspect"}
    pid = min(pids)  # the container's init, or the VMM
    mine = namespaces(os.getpid())
    theirs = namespaces(pid)
    status = status_fields(pid)
    caps = capabilities(status.get("CapEff", "0"))
    return {
        "available": True,
        "host_pid": pid,
        "subject": "workload" if ctx.workload_pids else "vmm",
        "namespaces_differing": [ns for ns in NAMESPACES if theirs[ns] and theirs[ns] != mine[ns]],
        "namespaces_shared": [ns for ns in NAMESPACES if theirs[ns] and theirs[ns] == mine[ns]],
        "capabilities": caps,
        "capability_count": len(caps),
        "seccomp": SECCOMP_MODES.get(status.get("Seccomp", ""), "unknown"),
    }
