"""What the workload costs the host in memory: its processes, and the shim or VMM apart."""

from __future__ import annotations

from typing import Any

import psutil

from explorer.probes import ProbeContext
from explorer.probes.hostproc import memory_bytes


def _total(pids: list[int]) -> dict[str, int]:
    total = {"rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0}
    for pid in pids:
        try:
            for key, value in memory_bytes(pid).items():
                total[key] += value
        except psutil.Error:
            continue
    return total


def probe(ctx: ProbeContext) -> dict[str, Any]:
    runtime = list(ctx.runtime_pids)
    by_role: dict[str, list[int]] = {}
    for pid, role in ctx.runtime_pids.items():
        by_role.setdefault(role, []).append(pid)
    out: dict[str, Any] = {
        "workload": {**_total(ctx.workload_pids), "processes": len(ctx.workload_pids)},
        "runtime": {**_total(runtime), "processes": len(runtime)},
        "runtime_roles": {role: {**_total(pids), "processes": len(pids)} for role, pids in by_role.items()},
    }
    if "memory_mib" in ctx.facts:
        out["configured_bytes"] = ctx.facts["memory_mib"] * 1024 * 1024
    both = ("rss_bytes", "pss_bytes")
    out["host_total"] = {k: out["workload"][k] + out["runtime"][k] for k in both}
    return out
