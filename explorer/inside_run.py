"""The inside probe's step of a run (explorer/lifecycle.py's probe, on the probed start): the
probe built (cached), delivered where the workload runs by the side's own channel, run there as
the workload's user and as the side's root, removed; the host's own values read right after, at
the same moment; and the record made of it (explorer/probes/inside/side.py). A side where it
cannot run is "not measured", with the reason; nothing of it stays in the guest or on the host.
"""

from __future__ import annotations

import os
import time
from typing import TypeVar

import psutil

from explorer.backends import Backend
from explorer.errors import BuildError, ExplorerError, UsageError
from explorer.model import GuestView, Target
from explorer.probes.inside import build, side
from explorer.probes.inside.run import NOBODY, host_reference, native_row
from explorer.probes.visibility import name_matches
from explorer.result.inside import InsideRow, InsideSide
from explorer.scenario import Scenario

H = TypeVar("H")  # the side's handle: passed to its channel, never read here

# Tests only: each probe run sleeps this many seconds before it reads anything (the probe's own
# --sleep-for-test), so that a test can find it running (Ctrl-C while a probe runs) or hung.
SLEEP_FOR_TEST = "EXPLORER_INSIDE_SLEEP_FOR_TEST"


def _sleep_for_test() -> tuple[str, ...]:
    value = os.environ.get(SLEEP_FOR_TEST, "")
    if not value:
        return ()
    if not value.isdigit() or not 0 < int(value) <= 300:
        raise UsageError(f"{SLEEP_FOR_TEST} must be a whole number of seconds from 1 to 300, not {value!r}")
    return ("--sleep-for-test", str(int(value)))


def measure(
    backend: Backend[H], scenario: Scenario, target: Target[H], guest: GuestView | None, host_pids: list[int]
) -> InsideSide:
    """The side's inside record: runs where the workload runs, or why there are none."""
    answers, on_host = backend.side.answers, backend.side.on_host_kernel
    extra = _sleep_for_test()
    if guest is None:
        return side.not_measured("no view of the guest: the workload's process inside is not known", answers)
    names = set(scenario.workload.processes)
    inside = [p.pid for p in guest.processes if not p.kernel_thread and name_matches(p.name, names)]
    if not inside:
        return side.not_measured(f"no process named {', '.join(sorted(names))} in the guest's view", answers)
    try:
        binary = build.build()
    except BuildError as exc:
        return side.not_measured(f"the probe could not be built: {exc} ({exc.hint})", answers)
    program = side.program(str(binary), min(inside), f".explorer-inside-{target.name}", extra=extra)
    started = time.monotonic()
    try:
        delivery = backend.inside(target, program)
    except ExplorerError as exc:
        return side.not_measured(f"the probe could not be run where the workload runs: {exc}", answers)
    host = host_reference(binary)  # the host's own values, read right after: the same moment
    return side.record(
        delivery, host, answers, on_host, _workload_on_host(host_pids, names), time.monotonic() - started
    )


def _workload_on_host(pids: list[int], names: set[str]) -> int | None:
    """The host PID of the workload's own process (the one the scenario names; a system
    container's first process is its systemd), whose seccomp filter the cross-check reads."""
    named = []
    for pid in pids:
        try:
            if name_matches(psutil.Process(pid).name(), names):
                named.append(pid)
        except psutil.Error:
            continue
    return min(named or pids) if pids else None


def native() -> InsideRow | None:
    """The native row: the probe as a plain host process, as root and as a plain user (nobody);
    None where the probe cannot be built here (each side then says why)."""
    try:
        binary = build.build()
    except BuildError:
        return None
    return native_row(binary, NOBODY)
