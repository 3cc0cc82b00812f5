"""Host figures for a density run: what many running instances cost the host, read while they
run. MemAvailable (the kernel's own estimate of what could still be allocated), the summed PSS
of every instance's host processes, the engine daemons' own memory, and KSM's state.

A probe never starts anything; `explorer/density_run.py` runs the lifecycle and calls these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

from explorer.probes.hostproc import memory_bytes
from explorer.probes.memory import tcg_cache_bytes

KSM_DIR = Path("/sys/kernel/mm/ksm")
KSM_FIELDS = ("run", "pages_shared", "pages_sharing", "pages_unshared", "full_scans")
KSM_SETTLE_PERCENT = 5  # Kata's memory_usage.sh: settled once pages_sharing moves < 5% per full scan
KSM_SETTLE_S = 30.0


def mem_available() -> int:
    return psutil.virtual_memory().available


def summed_memory(pids: Iterable[int]) -> dict[str, int]:
    """PSS, RSS and USS summed over `pids` (each counted once); PSS splits pages shared between
    instances, so the sum over all of them counts each shared page once."""
    total = {"pss_bytes": 0, "rss_bytes": 0, "uss_bytes": 0, "processes": 0}
    for pid in sorted(set(pids)):
        try:
            for key, value in memory_bytes(pid).items():
                total[key] += value
        except psutil.Error:
            continue  # gone meanwhile (a transient exec'd process)
        total["processes"] += 1
    return total


def engine_daemons(names: tuple[str, ...]) -> dict[str, int]:
    """PSS of each daemon named (the engine's own, which say which serve it: another engine's
    growth is not this side's) that runs here, several processes of a name summed."""
    found: dict[str, int] = {}
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in names:
            continue
        try:
            found[proc.info["name"]] = found.get(proc.info["name"], 0) + proc.memory_full_info().pss
        except psutil.Error:
            continue
    return found


def growth(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    """Each daemon's growth since `before` (a daemon that appeared counts from zero)."""
    return {name: now[name] - before.get(name, 0) for name in now}


def vmm_tcg_cache(pids: Iterable[int]) -> int:
    """Summed PSS of the TCG code caches of `pids` (0 for anything but QEMU under TCG)."""
    total = 0
    for pid in set(pids):
        try:
            total += tcg_cache_bytes(psutil.Process(pid).memory_maps(grouped=False))
        except psutil.Error:
            continue
    return total


def parse_ksm(values: dict[str, str]) -> dict[str, Any]:
    """KSM's sysfs files as numbers; `available` False where the kernel has no KSM."""
    numbers = {key: int(values[key].strip()) for key in KSM_FIELDS if values.get(key, "").strip().isdigit()}
    return {"available": "run" in numbers, **numbers}


def read_ksm(root: Path = KSM_DIR) -> dict[str, Any]:
    values = {}
    for key in KSM_FIELDS:
        try:
            values[key] = (root / key).read_text()
        except OSError:
            continue
    return parse_ksm(values)


def settle_ksm(
    read: Callable[[], dict[str, Any]] = read_ksm,
    timeout_s: float = KSM_SETTLE_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Where KSM runs (run == 1), wait until pages_sharing moves less than 5% between two full
    scans, as Kata's memory_usage.sh does, for at most `timeout_s`: memory read before KSM has
    merged the new instances' pages would overstate their cost. Returns the last state, with
    `settled` and `waited_s`."""
    start = clock()
    state = read()
    if state.get("run") != 1:
        return {**state, "settled": True, "waited_s": 0.0, "why": "KSM is not running"}
    last_scan, last_sharing = state.get("full_scans"), None
    while clock() - start < timeout_s:
        sleep(1.0)
        state = read()
        if state.get("full_scans") == last_scan:
            continue
        sharing = state.get("pages_sharing", 0)
        if last_sharing is not None and abs(sharing - last_sharing) <= last_sharing * KSM_SETTLE_PERCENT / 100:
            return {**state, "settled": True, "waited_s": round(clock() - start, 3), "why": "pages_sharing settled"}
        last_scan, last_sharing = state.get("full_scans"), sharing
    return {
        **state,
        "settled": False,
        "waited_s": round(clock() - start, 3),
        "why": f"still changing after {timeout_s:.0f}s",
    }
