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
import functools
import os
import resource
import select
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psutil

from explorer import interrupts
from explorer.probes import seccomp as seccomp_probe
from explorer.probes import seccomp_bpf
from explorer.tools import with_parent_death_signal

TRACEFS = Path("/sys/kernel/tracing")
TOTAL_EVENT = "raw_syscalls:sys_enter"
NAMED_EVENTS = "syscalls:sys_enter_*"
NAMED_PREFIX = "syscalls:sys_enter_"
KVM_EXIT = "kvm:kvm_exit"  # a KVM guest's exits to its VMM: counted apart (no system call)
ATTACH_S = 0.5  # a perf without --control: how long it is given to open its counters before the round starts
CONTROL_WAIT_S = 30.0  # how long perf may take to open every counter and acknowledge 'enable'
METHOD = f"perf stat -e {TOTAL_EVENT} -e '{NAMED_EVENTS}' -p PIDS (every thread; forked children inherit)"
NARROWED_METHOD = (
    f"perf stat -e {TOTAL_EVENT} -e syscalls:sys_enter_NAME,... (the calls the side made in an idle window and a "
    f"short loaded one, found by number there, and a few runtimes' housekeeping calls) -e {TOTAL_EVENT} --filter "
    "'id != N && ...' (every other call: counted in the total, not named) -p PIDS (every thread; forked children "
    "inherit)"
)
# calls a runtime makes now and then whatever the load (Go's preemption and scheduler, allocators
# returning memory): counted by name always, as a discovery run may be too short to see them
HOUSEKEEPING = (
    "futex",
    "madvise",
    "mmap",
    "munmap",
    "mprotect",
    "brk",
    "tgkill",
    "rt_sigreturn",
    "getpid",
    "gettid",
    "sched_yield",
    "nanosleep",
    "clock_nanosleep",
    "epoll_pwait",
)
OTHERS = "(other calls)"  # a narrowed count's calls of no named event
ALL_CALLS_ESTIMATE = 400  # x86_64's syscalls:sys_enter_* tracepoints: ~360 here, with room


@dataclass(frozen=True)
class Events:
    """What one `perf stat` counts besides the raw total (raw_syscalls:sys_enter).

    Every call by its own tracepoint is exact, but the kernel tears each tracepoint down with
    RCU grace periods when its last user closes it: ~40 ms each, ~15 s for the ~360 calls of
    x86_64 (measured here), paid once per side even with a Keeper; and ~360 events on every
    thread slow a counted round ~5x. So a side's load phase finds the calls it makes by number
    first, with one filter per call number on the raw event (one tracepoint, one teardown; but
    each call of a counted process walks every filter, so only in an idle window and a short
    loaded discovery whose speed is no figure), then counts its traced rounds with the named
    events of those calls only, plus one count of every other call: the total stays exact, and
    calls of a name not found beforehand are counted, unnamed (`unnamed_calls`)."""

    named: tuple[str, ...] | None = None  # calls by their own tracepoint; None: every call's
    filtered: tuple[tuple[str, str], ...] = ()  # (label, filter on the raw event), in this order

    def argv(self) -> list[str]:
        out = ["-e", TOTAL_EVENT]
        if self.named is None:
            out += ["-e", NAMED_EVENTS]
        elif self.named:
            out += ["-e", ",".join(NAMED_PREFIX + name for name in self.named)]
        for _, expr in self.filtered:
            out += ["-e", TOTAL_EVENT, "--filter", expr]
        return out

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.filtered]

    @property
    def count(self) -> int:
        """How many events one perf opens per thread it counts (every call's: ~360 tracepoints)."""
        return 1 + (ALL_CALLS_ESTIMATE if self.named is None else len(self.named)) + len(self.filtered)


EVERY_CALL = Events()


def by_number(table: dict[int, str]) -> Events:
    """Each call number of the host's architecture counted by a filter of its own."""
    return Events(named=(), filtered=tuple((name, f"id == {nr}") for nr, name in sorted(table.items())))


def narrowed(names: Iterable[str], table: dict[int, str]) -> Events:
    """`names` counted by their own tracepoints (by number where a call has none), and every
    other call as one count."""
    numbers = {name: nr for nr, name in table.items()}
    wanted = sorted({name for name in (*names, *HOUSEKEEPING) if name in numbers})
    traced = tuple(name for name in wanted if (TRACEFS / "events" / "syscalls" / f"sys_enter_{name}").is_dir())
    untraced = [(name, f"id == {numbers[name]}") for name in wanted if name not in traced]
    others = " && ".join(f"id != {numbers[name]}" for name in wanted) or "id >= 0"
    return Events(named=traced, filtered=(*untraced, (OTHERS, others)))


def syscall_table() -> dict[int, str]:
    """{number: name} of the host architecture's system calls, as libseccomp names them (one
    reader of them: explorer/probes/seccomp_bpf.py); OSError where it cannot be loaded."""
    return seccomp_bpf.native_calls()[1]


class Keeper:
    """One more `perf stat` on the same events, counting an idle `sleep` of its own, held open
    around a side's counted windows. The kernel tears a tracepoint event down when its last
    user closes it, waiting for an RCU grace period per event: with ~350 `sys_enter_*` events
    that is ~13 s each time a window's perf stops (measured here). The keeper stays their
    last user, so a window stops in milliseconds and the teardown is paid once, when the keeper
    ends. It lives only around the counted windows: an open syscall tracepoint costs every
    process on the host a little on each call (~80 ns here), which the measured rounds and
    the starts must not pay."""

    def __init__(self, events: Events = EVERY_CALL) -> None:
        self.events = Events(named=events.named)  # the tracepoints: filters share the raw event's
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        idle = with_parent_death_signal(["sleep", "infinity"])  # ends with perf, even on kill -9
        argv = with_parent_death_signal(["perf", "stat", "-x,", *self.events.argv(), "--", *idle])
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


def parse_stat(text: str, filtered: Iterable[str] = ()) -> tuple[int | None, dict[str, int], int | None]:
    """perf stat -x, output: (raw_syscalls total or None, {syscall: count} of the nonzero ones,
    KVM exits or None where they were not counted). A line is `count,unit,event,...`;
    `<not counted>` / `<not supported>` are counts perf could not take (its thread exited
    before the end): zero here. With `filtered` (the labels of the raw event's filtered
    counts, in the order perf was given them), the raw event's first line is the total and
    each later one the next label's count."""
    total: int | None = None
    exits: int | None = None
    named: dict[str, int] = {}
    labels = iter(filtered)
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 3:
            continue
        count = int(parts[0]) if parts[0].isdigit() else 0
        if parts[2] == TOTAL_EVENT and total is not None and filtered:
            label = next(labels, None)
            if label is None:
                raise ValueError(f"perf printed more counts of {TOTAL_EVENT} than it was given filters")
            if count:
                named[label] = named.get(label, 0) + count
        elif parts[2] == TOTAL_EVENT:
            total = (total or 0) + count
        elif parts[2] == KVM_EXIT:
            exits = (exits or 0) + count
        elif parts[2].startswith(NAMED_PREFIX) and count:
            name = parts[2].removeprefix(NAMED_PREFIX)
            named[name] = named.get(name, 0) + count
    return total, named, exits


@functools.cache
def has_control() -> bool:
    """Whether this perf starts with its counters disabled and enables them on a command,
    acknowledged once they count (`perf stat -D -1 --control`, perf 5.10 and later)."""
    helped = subprocess.run(["perf", "stat", "-h"], capture_output=True, text=True, check=False, timeout=30)
    return "--control" in helped.stdout + helped.stderr


@dataclass
class Counting:
    """One `perf stat` per role on that role's PIDs, from start() to stop(); several where the
    role's threads need more counters than one process may open (perf opens every event on every
    thread: gVisor's stubs have many), their counts added up per role. Each perf opens its
    counters disabled and enables them on a command it acknowledges (--control), so the counting
    starts when start() returns, not some time before; a perf without --control is given
    ATTACH_S to open them, and `lead_s` says so."""

    pids: dict[int, str]  # host PID -> role
    kvm_roles: frozenset[str] = frozenset()  # roles whose VM exits to count too (a KVM guest's VMM)
    events: Events = EVERY_CALL
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # role, or role#N for a role's Nth
    controls: dict[str, tuple[int, int]] = field(default_factory=dict)  # as procs: (command fd, acknowledgement fd)
    lead_s: float = 0.0  # how long before start() returned the counting may have begun

    def start(self) -> None:
        roles: dict[str, list[int]] = {}
        for pid, role in self.pids.items():
            roles.setdefault(role, []).append(pid)
        control = has_control()
        try:
            for role, pids in roles.items():
                events = self.events.count + (1 if role in self.kvm_roles else 0)
                for n, part in enumerate(parts_within(pids, events, open_files_limit())):
                    self._spawn(role, f"{role}#{n + 1}" if n else role, part, control)
            if control:
                self._enable()
            else:
                time.sleep(ATTACH_S)
                self.lead_s = ATTACH_S
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

    def _spawn(self, role: str, key: str, pids: list[int], control: bool) -> None:
        events = [*self.events.argv(), *(["-e", KVM_EXIT] if role in self.kvm_roles else [])]
        passed: tuple[int, ...] = ()
        if control:
            (ctl_read, ctl_write), (ack_read, ack_write) = os.pipe(), os.pipe()
            self.controls[key] = (ctl_write, ack_read)
            passed = (ctl_read, ack_write)
            events = ["-D", "-1", "--control", f"fd:{ctl_read},{ack_write}", *events]
        argv = with_parent_death_signal(["perf", "stat", "-x,", *events, "-p", ",".join(map(str, pids))])
        try:
            with interrupts.deferred():  # a perf started is a perf recorded, to be stopped
                self.procs[key] = subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, pass_fds=passed
                )
        finally:
            for fd in passed:  # perf's ends
                os.close(fd)

    def _enable(self) -> None:
        """'enable' to every perf, then each one's acknowledgement: all of them count from here."""
        for ctl, _ in self.controls.values():
            os.write(ctl, b"enable\n")
        deadline = time.monotonic() + CONTROL_WAIT_S
        for role, (_, ack) in self.controls.items():
            got = b""
            while b"\n" not in got:  # perf writes "ack\n" and a NUL
                ready, _, _ = select.select([ack], [], [], max(0.0, deadline - time.monotonic()))
                chunk = os.read(ack, 64) if ready else b""
                if not chunk:  # perf exited (its stderr says why), or never answered
                    if self.procs[role].poll() is None:
                        raise OSError(
                            f"perf stat on the {role} processes did not start counting in {CONTROL_WAIT_S:.0f} s"
                        )
                    return
                got += chunk

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
        self._close_controls()
        return figures(texts, self.events.labels)

    def abort(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        self._close_controls()

    def _close_controls(self) -> None:
        for fds in self.controls.values():
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.controls.clear()


OPEN_FILES_SPARE = 256  # perf's own files besides its counters


def open_files_limit() -> int:
    """How many files a perf started now may open: this process's limit, which it inherits (the
    soft one; raising the hard one needs CAP_SYS_RESOURCE, which this host's root lacks)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parts_within(pids: list[int], events: int, limit: int) -> list[list[int]]:
    """`pids` split so that each part's threads, `events` counters on each (perf opens every event
    on every thread of a process it attaches to), fit within `limit` open files: the ~360 events
    of a discovery on gVisor's stubs went past this host's 20,000 ("Too many events are opened",
    measured). A process too large for one perf on its own is a part alone (its perf says so)."""
    room = max(1, (limit - OPEN_FILES_SPARE) // max(events, 1))
    parts: list[list[int]] = []
    used = room  # a new part first
    for pid in pids:
        try:
            threads = psutil.Process(pid).num_threads()
        except psutil.Error:
            threads = 1  # gone, or going: perf says so
        if used + threads > room:
            parts.append([])
            used = 0
        parts[-1].append(pid)
        used += threads
    return parts


def figures(texts: dict[str, str], filtered: Iterable[str] = ()) -> dict[str, Any]:
    """Each role's perf stat output -> the totals, the calls by name, and each role's share."""
    total: Counter[str] = Counter()
    by_role: dict[str, dict[str, Any]] = {}
    calls = 0
    others = 0
    labels = list(filtered)
    raws: Counter[str] = Counter()  # by role: a role's Nth perf (role#N) counts more of its processes
    named_of: dict[str, Counter[str]] = {}
    exits_of: dict[str, int] = {}
    unnamed_of: Counter[str] = Counter()
    for key, text in texts.items():
        role = key.split("#", 1)[0]
        try:
            raw, named, exits = parse_stat(text, labels)
        except ValueError as exc:
            raise OSError(f"perf stat on the {role} processes: {exc}") from None
        if raw is None:
            raise OSError(f"perf stat on the {role} processes printed no count: {text.strip()[-300:]}")
        unnamed_of[role] += named.pop(OTHERS, 0)
        raws[role] += raw
        named_of.setdefault(role, Counter()).update(named)
        if exits is not None:
            exits_of[role] = exits_of.get(role, 0) + exits
    for role, role_named in named_of.items():
        others += unnamed_of[role]
        calls += raws[role]
        total.update(role_named)
        by_role[role] = {
            "calls": raws[role],
            "distinct": len(role_named),
            "top": role_named.most_common(4),
            "syscalls": dict(role_named.most_common()),
        }
        if role in exits_of:
            by_role[role]["kvm_exits"] = exits_of[role]
        if OTHERS in labels:
            by_role[role]["unnamed_calls"] = unnamed_of[role]
    named_sum = sum(total.values())
    return {
        "calls": calls,
        "distinct": len(total),
        "syscalls": dict(total.most_common()),
        "by_role": by_role,
        # calls with no tracepoint of their own, or outside a narrowed count's names (in the total only)
        "unnamed_calls": others if OTHERS in labels else max(0, calls - named_sum),
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
