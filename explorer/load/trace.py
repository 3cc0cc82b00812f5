"""System calls the host's kernel serves for a side's host processes, counted by the host's own
kernel: `perf stat` on the syscall tracepoints (raw_syscalls:sys_enter for the total,
syscalls:sys_enter_* for each call by name), attached to those processes with every thread,
over a round of the same load (counting perturbs throughput, so never over a measured round).

Counters, not a trace: nothing is lost under load, and a process forked while the round runs
(a PostgreSQL backend per client connection) inherits its parent's counters, so its calls
count with its parent's role even after it has exited (a trace's summary forgets an exited
thread). One perf per role, so that each role's calls are apart.

What it cannot see is said with it: a VM's guest work runs as QEMU's own user code under TCG
(no system call), and as VM exits under KVM, which are no system calls either; gVisor's
workload system calls are stopped by the Sentry before the host's kernel serves them
(PTRACE_SYSEMU), so only the Sentry's, the gofer's and the stubs' own reach it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from explorer import interrupts
from explorer.images.process import with_parent_death_signal
from explorer.probes import seccomp as seccomp_probe
from explorer.probes import seccomp_bpf

TRACEFS = Path("/sys/kernel/tracing")
TOTAL_EVENT = "raw_syscalls:sys_enter"
NAMED_EVENTS = "syscalls:sys_enter_*"
NAMED_PREFIX = "syscalls:sys_enter_"
KVM_EXIT = "kvm:kvm_exit"  # a KVM guest's exits to its VMM: counted apart (no system call)
ATTACH_S = 0.5  # perf opens a counter per thread and call before the round starts
METHOD = f"perf stat -e {TOTAL_EVENT} -e '{NAMED_EVENTS}' -p PIDS (every thread; forked children inherit)"


class Keeper:
    """One more `perf stat` on the same events, counting an idle `sleep` of its own, held open
    around a side's counted windows. The kernel tears a tracepoint event down when its last
    user closes it, waiting for an RCU grace period per event: with ~350 `sys_enter_*` events
    that is ~13 s each time a window's perf stops (measured here). The keeper stays their
    last user, so a window stops in milliseconds and the teardown is paid once, when the keeper
    ends. It lives only around the counted windows: an open syscall tracepoint costs every
    process on the host a little on each call (~80 ns here), which the measured rounds and
    the starts must not pay."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        idle = with_parent_death_signal(["sleep", "infinity"])  # ends with perf, even on kill -9
        argv = with_parent_death_signal(["perf", "stat", "-x,", "-e", TOTAL_EVENT, "-e", NAMED_EVENTS, "--", *idle])
        with interrupts.deferred():  # a keeper started is a keeper recorded, to be ended
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with interrupts.deferred():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()  # its exit is the one teardown: nothing of it is left after
            self.proc = None


def unavailable() -> str | None:
    """Why host counting cannot run here (None: it can)."""
    if shutil.which("perf") is None:
        return "perf is not installed (apt-get install linux-perf; scripts/setup-host does)"
    if not (TRACEFS / "events" / "syscalls").is_dir():
        return f"tracefs is not mounted at {TRACEFS} (mount -t tracefs nodev {TRACEFS}; scripts/setup-host does)"
    if os.geteuid() != 0:
        return "counting other users' processes' system calls needs root"
    return None


def parse_stat(text: str) -> tuple[int | None, dict[str, int], int | None]:
    """perf stat -x, output: (raw_syscalls total or None, {syscall: count} of the nonzero ones,
    KVM exits or None where they were not counted). A line is `count,unit,event,...`;
    `<not counted>` / `<not supported>` are counts perf could not take (its thread exited
    before the end): zero here."""
    total: int | None = None
    exits: int | None = None
    named: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 3:
            continue
        count = int(parts[0]) if parts[0].isdigit() else 0
        if parts[2] == TOTAL_EVENT:
            total = (total or 0) + count
        elif parts[2] == KVM_EXIT:
            exits = (exits or 0) + count
        elif parts[2].startswith(NAMED_PREFIX) and count:
            name = parts[2].removeprefix(NAMED_PREFIX)
            named[name] = named.get(name, 0) + count
    return total, named, exits


@dataclass
class Counting:
    """One `perf stat` per role on that role's PIDs, from start() to stop()."""

    pids: dict[int, str]  # host PID -> role
    kvm_roles: frozenset[str] = frozenset()  # roles whose VM exits to count too (a KVM guest's VMM)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        roles: dict[str, list[int]] = {}
        for pid, role in self.pids.items():
            roles.setdefault(role, []).append(pid)
        try:
            for role, pids in roles.items():
                events = ["-e", TOTAL_EVENT, "-e", NAMED_EVENTS, *(["-e", KVM_EXIT] if role in self.kvm_roles else [])]
                argv = with_parent_death_signal(["perf", "stat", "-x,", *events, "-p", ",".join(map(str, pids))])
                with interrupts.deferred():  # a perf started is a perf recorded, to be stopped
                    self.procs[role] = subprocess.Popen(
                        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
                    )
            time.sleep(ATTACH_S)
        except BaseException:  # an interrupt while attaching: no perf is left counting
            with interrupts.deferred():
                self.abort()
            raise
        failed = [(role, proc) for role, proc in self.procs.items() if proc.poll() is not None]
        if failed:
            role, proc = failed[0]
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            self.abort()
            raise OSError(f"perf stat on the {role} processes exited {proc.returncode}: {err.strip()[-300:]}")

    def stop(self) -> dict[str, Any]:
        """The counts by syscall and by role."""
        texts: dict[str, str] = {}
        for role, proc in self.procs.items():
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for role, proc in self.procs.items():
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            texts[role] = err.decode(errors="replace")
        return figures(texts)

    def abort(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def figures(texts: dict[str, str]) -> dict[str, Any]:
    """Each role's perf stat output -> the totals, the calls by name, and each role's share."""
    total: Counter[str] = Counter()
    by_role: dict[str, dict[str, Any]] = {}
    calls = 0
    for role, text in texts.items():
        raw, named, exits = parse_stat(text)
        if raw is None:
            raise OSError(f"perf stat on the {role} processes printed no count: {text.strip()[-300:]}")
        calls += raw
        total.update(named)
        by_role[role] = {
            "calls": raw,
            "distinct": len(named),
            "top": Counter(named).most_common(4),
            "syscalls": dict(Counter(named).most_common()),
        }
        if exits is not None:
            by_role[role]["kvm_exits"] = exits
    named_sum = sum(total.values())
    return {
        "calls": calls,
        "distinct": len(total),
        "syscalls": dict(total.most_common()),
        "by_role": by_role,
        # calls with no tracepoint of their own (counted in the total only)
        "unnamed_calls": max(0, calls - named_sum),
    }


def seccomp(pid: int) -> dict[str, Any]:
    """The process's seccomp mode and the number of filters attached to it."""
    mode, filters = seccomp_probe.mode(pid)
    return {"seccomp": mode, "seccomp_filters": filters}


def filters(pids: dict[int, str], kernel_roles: Collection[str], traced: dict[str, Any]) -> dict[str, Any]:
    """Each role's seccomp filters read and evaluated (explorer/probes/seccomp.py), beside the
    distinct calls the role made in the traced round; and `reach`, their union over the roles
    whose calls the host's kernel serves for the workload, beside the calls those made. Read
    after the rounds, the workload idle: reading stops each process for a moment."""
    try:
        _, calls = seccomp_bpf.native_calls()
    except OSError as exc:
        return {"available": False, "reason": f"libseccomp, which names the host's calls, cannot be loaded: {exc}"}
    with interrupts.deferred():  # a process stopped to be read is a process let go
        readings = {pid: seccomp_probe.read(pid) for pid in pids}
    found = seccomp_probe.by_roles(readings, pids, kernel_roles)
    used = (traced.get("by_role") or {}) if traced.get("available") else None
    for role, figures_of_role in found["by_role"].items():
        figures_of_role["used"] = _used(used, [role])
    found["reach"]["used"] = _used(used, found["reach"]["roles"])
    return {
        "available": True,
        "method": seccomp_probe.METHOD,
        "arch": seccomp_bpf.arch_name(),
        "calls": len(calls),
        **found,
    }


def _used(by_role: dict[str, Any] | None, roles: list[str]) -> int | None:
    """Distinct calls these roles made in the traced round (None: no round was counted)."""
    if by_role is None:
        return None
    return len(set().union(*((by_role.get(role) or {}).get("syscalls", {}) for role in roles)))
