"""The traced part of a side's load phase: the system calls of the side's host processes,
counted by the host's kernel over one more round of each path (explorer/load/trace.py), with
what it costs kept short.

Counting every call by its own tracepoint is exact, but the kernel tears each one down with
RCU grace periods when its last user closes it (~15 s for x86_64's ~360 calls, measured here),
which would be most of a side's load phase. So, once per side:

1. an idle window (as long as a round; no client) counts each role's calls by number: the
   idle rate that is taken out of each traced round, and the calls the side makes idle;
2. a short loaded discovery run per path, in one window, counts the calls by number again
   (one filter per call number on the raw event: one tracepoint, one teardown; it slows each
   counted call, so its speed is no figure);
3. per path, the traced round counts the calls found in 1 and 2 (and a few runtimes'
   housekeeping calls, trace.HOUSEKEEPING) by their own tracepoints, and every other call as one
   count. A Keeper holds those few tracepoints over the traced rounds, so their teardown (~40 ms
   each) is paid once. The totals and the calls per operation are exact either way; calls of
   a name the discovery did not see are counted, unnamed (`unnamed_calls`, by role too), so a
   role's distinct calls are at least those named. (Counting such a round again with every
   call's tracepoint cost ~25 s here: the slow teardown, and the ~360 events slowing the round
   ~5x; it is not done.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psutil

from explorer.load import trace
from explorer.load.endpoint import Endpoint, Split

ATTACH_TRIES = 3  # listings of a side's processes before perf's failure to attach is an error


@dataclass
class Counted:
    """A path to count: its endpoint, and its client run once for a traced round (returning
    the client's parsed figures) or briefly for discovery."""

    endpoint: Endpoint
    traced_run: Callable[[], dict[str, Any]]
    discovery_run: Callable[[], Any]
    died_or_not: Callable[[], None]  # raises LoadFailed naming the workload's death, if it died


def traced_rounds(
    paths: dict[str, Counted], seconds: float, why_not: str | None, split: Split
) -> dict[str, dict[str, Any]]:
    """Each path's `traced` figures: {available, per_op, calls, by_role, syscalls, ...}, or
    {available: False, reason}. OSError from the counting is that reason; a death of the
    workload under the load (LoadFailed) is the caller's."""
    if why_not or not paths:
        return {name: {"available": False, "reason": why_not or "no path"} for name in paths}
    try:
        table: dict[int, str] | None = trace.syscall_table()
        narrowing = None
    except OSError as exc:
        table, narrowing = None, f"every call counted by its own tracepoint (names by number unknown: {exc})"
    try:
        idle, found = _idle_and_discovery(paths, seconds, table, split)
        events = trace.narrowed(found, table) if table is not None else trace.EVERY_CALL
        out: dict[str, dict[str, Any]] = {}
        keeper = trace.Keeper(events)
        with split.part("keeper_s"):
            keeper.__enter__()
        try:
            for name, path in paths.items():
                out[name] = _traced(path, events, idle, split)
        finally:
            with split.part("keeper_s"):  # the teardown of the few tracepoints, once
                keeper.__exit__(None, None, None)
    except OSError as exc:
        for path in paths.values():
            path.died_or_not()  # a process gone before perf could attach: the workload may have died
        return {name: {"available": False, "reason": f"host counting failed: {exc}"} for name in paths}
    for traced in out.values():
        if narrowing:
            traced["narrowing"] = narrowing
    return out


def _idle_and_discovery(
    paths: dict[str, Counted], seconds: float, table: dict[int, str] | None, split: Split
) -> tuple[dict[str, Any], set[str]]:
    """The idle window over every path's processes, and each path's discovery: the idle counts,
    and the names of every call seen (none without a table: everything is counted then)."""

    def every_pid() -> dict[int, str]:
        return {pid: role for path in paths.values() for pid, role in path.endpoint.pids().items()}

    events = trace.by_number(table) if table is not None else trace.Events(named=())
    union = replace(next(iter(paths.values())).endpoint, pids=every_pid)
    idle, _ = counted_window(union, lambda: split.timed("idle_window_s", lambda: time.sleep(seconds)), events, split)
    found = set(idle["syscalls"])
    if (
        table is not None
    ):  # one window for every path's discovery run: each window's ~370 counters per thread take a while to open

        def discover() -> None:
            for path in paths.values():
                split.timed("discovery_s", path.discovery_run)

        loaded, _ = counted_window(union, discover, events, split)
        found |= set(loaded["syscalls"])
    return idle, found


def _traced(path: Counted, events: trace.Events, idle: dict[str, Any], split: Split) -> dict[str, Any]:
    """One traced round of the path."""
    outputs: list[dict[str, Any]] = []
    run = lambda: outputs.append(split.timed("traced_rounds_s", path.traced_run))
    counted, pids = counted_window(path.endpoint, run, events, split)
    figures = outputs[0]
    out = per_op(counted, idle, figures)
    out["argv"] = figures["argv"]
    out["method"] = trace.METHOD if events.named is None else trace.NARROWED_METHOD
    if events.named is not None:
        out["named"] = sorted({*events.named, *(label for label in events.labels if label != trace.OTHERS)})
    out["processes"] = [
        {"pid": pid, "role": role, "name": _name_of(pid), **trace.seccomp(pid)} for pid, role in pids.items()
    ]
    return out


def per_op(counted: dict[str, Any], idle: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """The counts of a loaded window per operation: the idle part of the window (perf's attach
    and stop, around the client's run) taken out at each role's own idle rate, from the idle
    window (roles absent from this path's window are not taken out)."""
    idle_s = max(0.0, counted["window_s"] - figures["seconds"])
    rates = {role: r["calls"] / idle["window_s"] for role, r in idle["by_role"].items() if role in counted["by_role"]}
    ops = figures["ops"]
    for role, r in counted["by_role"].items():
        busy = max(0.0, r["calls"] - rates.get(role, 0.0) * idle_s)
        r["per_op"] = round(busy / ops, 3) if ops else None
        r["idle_calls_s"] = round(rates.get(role, 0.0), 1)
    busy = max(0.0, counted["calls"] - sum(rates.values()) * idle_s)
    return {
        "available": True,
        "ops": ops,
        "ops_s_while_counted": figures["ops_s"],
        **counted,
        "idle_window_s": idle["window_s"],
        "idle_calls_s": round(sum(rates.values()), 1),
        "per_op": round(busy / ops, 3) if ops else None,
    }


def counted_window(
    endpoint: Endpoint, during: Callable[[], Any], events: trace.Events, split: Split
) -> tuple[dict[str, Any], dict[int, str]]:
    """The host's counts of the endpoint's processes' system calls while `during` runs, with the
    window's length; and the processes counted. A process that ends between being listed and
    perf attaching (a PostgreSQL backend of the last round) makes perf fail: the processes are
    listed again, a few times, before that is an error."""
    for attempt in range(ATTACH_TRIES):
        pids = endpoint.pids()
        counting = trace.Counting(pids, endpoint.kvm_roles, events)
        try:
            with split.part("perf_start_s"):
                counting.start()
        except OSError:
            if attempt == ATTACH_TRIES - 1:
                raise
            endpoint.alive()
            continue
        try:
            started = time.monotonic()
            during()
            window = time.monotonic() - started + counting.lead_s
            with split.part("perf_stop_s"):
                return {**counting.stop(), "window_s": round(window, 3)}, pids
        except BaseException:
            counting.abort()
            raise
    raise AssertionError("unreachable")


def _name_of(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None
