"""What the workload costs the host in memory: its processes, and the shim or VMM apart.

Under TCG (software emulation) QEMU's PSS includes its translation cache, the guest's code
translated for the host: an anonymous read-write-execute mapping (QEMU reserves up to 1 GiB
for it). It is the emulator's cost, not the guest's, and there is none under KVM, so a VM's
figures carry it apart (`tcg_cache_pss_bytes`) and without it (`pss_without_tcg_cache_bytes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psutil

from explorer.probes import ProbeContext
from explorer.probes.hostproc import memory_bytes

MIB = 1024 * 1024
TCG_MIN_MAPPING_BYTES = MIB  # the code buffer's regions are large; small rwx maps are not it


def _total(pids: list[int]) -> dict[str, int]:
    total = {"rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0}
    for pid in pids:
        try:
            for key, value in memory_bytes(pid).items():
                total[key] += value
        except psutil.Error:
            continue
    return total


def _anonymous(path: str) -> bool:
    return not path or path == "[anon]" or path.startswith("[anon:")


def tcg_cache_bytes(maps: Iterable[Any]) -> int:
    """The PSS of the TCG code cache among a process's mappings (psutil memory_maps with
    grouped=False: each has path, perms, size and pss): the anonymous rwx ones of at least
    1 MiB (QEMU splits its code buffer into regions, each its own mapping)."""
    return sum(
        m.pss for m in maps if _anonymous(m.path) and m.perms.startswith("rwx") and m.size >= TCG_MIN_MAPPING_BYTES
    )


def tcg_figures(ctx: ProbeContext, host_pss: int) -> dict[str, Any]:
    """The TCG cache's share of a VM side's host PSS; zero, and said so, under KVM."""
    accel = ctx.accel_mode
    cache = 0
    if accel == "tcg":
        for pid in ctx.runtime_pids:
            try:
                cache += tcg_cache_bytes(psutil.Process(pid).memory_maps(grouped=False))
            except psutil.Error:
                continue
    limit = ctx.scenario.vm.tb_cache_mib if accel == "tcg" else None
    return {
        "tcg_cache_pss_bytes": cache,
        "pss_without_tcg_cache_bytes": host_pss - cache,
        "tcg_cache_basis": "anonymous rwx mappings of the VMM (smaps)" if accel == "tcg" else f"none under {accel}",
        "tcg_cache_limit_bytes": limit * MIB if limit else None,
    }  # None: QEMU's default


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
    if ctx.kind == "vm":
        out.update(tcg_figures(ctx, out["host_total"]["pss_bytes"]))
    return out
