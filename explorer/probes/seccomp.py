"""How much of the host's kernel a process may reach: its seccomp mode (/proc/PID/status) and,
under a filter, the filter programs in force, read with ptrace's PTRACE_SECCOMP_GET_FILTER and
evaluated for every system call of the host's architecture (explorer/probes/seccomp_bpf.py).

Filters belong to threads: the thread group leader's are read (the PID a process is listed
by); a thread that installed one of its own later is not seen. Reading stops the leader for a
moment (PTRACE_SEIZE, PTRACE_INTERRUPT, the wait for that stop, the reads, PTRACE_DETACH, the
detach always). The kernel hands a filter only to a reader with CAP_SYS_ADMIN that runs under
no seccomp filter itself, and a process has one tracer at most: one already traced (gVisor's
stubs, traced by its Sentry) cannot be read. What cannot be read is reported not read, with
why; explorer never guesses a filter.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from explorer.probes import hostproc, seccomp_bpf
from explorer.probes.seccomp_bpf import ALLOWED, CLASSES, CONDITIONAL, DENIED

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_SECCOMP_GET_FILTER = 17, 0x4206, 0x4207, 0x420C
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: a tracee's stop, whatever kind of child it is
STOP_WAIT_S = 5.0  # for the leader to reach the stop PTRACE_INTERRUPT asks for
YAMA = Path("/proc/sys/kernel/yama/ptrace_scope")
METHOD = (
    "mode and filter count from /proc/PID/status; the filters of the thread group leader with "
    "ptrace(PTRACE_SECCOMP_GET_FILTER) (seized, interrupted, read, detached), evaluated for every system call "
    "libseccomp names for the host's architecture, arguments unknown"
)


class NotRead(Exception):
    """A filter that could not be read, with why."""


@dataclass(frozen=True)
class Reading:
    """One process's seccomp: its mode, its filters' count, and the programs (oldest first)
    where they were read; `reason` says why they were not."""

    pid: int
    mode: str  # disabled | strict | filter | unknown
    filters: int | None
    programs: tuple[bytes, ...] | None = None
    reason: str | None = None
    tracer: int | None = None  # the PID already tracing it, which kept it from being read

    @property
    def read(self) -> bool:
        return self.mode in ("disabled", "strict") or self.programs is not None


def mode(pid: int) -> tuple[str, int | None]:
    """The seccomp mode (disabled, strict, filter; unknown where /proc says nothing) and filter count."""
    fields = hostproc.status_fields(pid)
    filters = fields.get("Seccomp_filters", "")
    return hostproc.SECCOMP_MODES.get(fields.get("Seccomp", ""), "unknown"), int(filters) if filters.isdigit() else None


def read(pid: int) -> Reading:
    """The process's seccomp, its filter programs read where it runs under a filter."""
    found, count = mode(pid)
    if found != "filter":
        why = None if found != "unknown" else "its /proc/PID/status has no Seccomp field (gone, or a kernel without it)"
        return Reading(pid, found, count, reason=why)
    try:
        return Reading(pid, found, count, programs=filter_programs(pid))
    except NotRead as exc:
        return Reading(pid, found, count, reason=str(exc), tracer=tracer_of(pid))


def tracer_of(pid: int) -> int | None:
    """The process tracing it, None where none does. TracerPid names the tracing thread (one
    of the Sentry's threads for a gVisor stub): its thread group is the process."""
    tracer = hostproc.status_fields(pid).get("TracerPid", "0")
    if not tracer.isdigit() or tracer == "0":
        return None
    group = hostproc.status_fields(int(tracer)).get("Tgid", tracer)
    return int(group) if group.isdigit() else int(tracer)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    return libc


def _ptrace(libc: ctypes.CDLL, request: int, pid: int, addr: int = 0, data: Any = None) -> int:
    ctypes.set_errno(0)
    result = int(libc.ptrace(request, pid, addr, data))
    if result == -1 and ctypes.get_errno():
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def filter_programs(pid: int) -> tuple[bytes, ...]:
    """The leader's filter programs, oldest first (ptrace's index 0), each as the BPF
    instructions it was loaded with. NotRead says why they could not be had."""
    tracer = tracer_of(pid)
    if tracer:
        raise NotRead(f"already traced by PID {tracer} ({_name(tracer)}): a process has one tracer at most")
    libc = _libc()
    try:
        _ptrace(libc, PTRACE_SEIZE, pid)
    except OSError as exc:
        raise NotRead(_attach_refused(exc)) from None
    redeliver = 0
    try:
        _ptrace(libc, PTRACE_INTERRUPT, pid)
        redeliver = _wait_stopped(pid)
        return tuple(_programs(libc, pid))
    except OSError as exc:
        raise NotRead(_read_refused(exc)) from None
    finally:
        _detach(libc, pid, redeliver)


def _wait_stopped(pid: int) -> int:
    """Wait for the seized leader to stop; the signal to hand back at detach if what stopped it
    was a signal on its way to it (0 for our own interrupt)."""
    deadline = time.monotonic() + STOP_WAIT_S
    while True:
        waited, status = os.waitpid(pid, os.WNOHANG | WALL)
        if waited == pid and os.WIFSTOPPED(status):
            event = status >> 16
            return 0 if event == PTRACE_EVENT_STOP else os.WSTOPSIG(status)
        if waited == pid:
            raise OSError(errno.ESRCH, "it exited while being read")
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, f"it did not stop within {STOP_WAIT_S:g} s")
        time.sleep(0.001)


def _programs(libc: ctypes.CDLL, pid: int) -> list[bytes]:
    """Filter 0, 1, ... until the kernel says there is no such index (ENOENT)."""
    found: list[bytes] = []
    for index in range(4096):
        try:
            count = _ptrace(libc, PTRACE_SECCOMP_GET_FILTER, pid, index, None)
        except OSError as exc:
            if exc.errno == errno.ENOENT and found:
                return found
            raise
        buffer = ctypes.create_string_buffer(count * seccomp_bpf.INSTRUCTION.size)
        got = _ptrace(libc, PTRACE_SECCOMP_GET_FILTER, pid, index, buffer)
        found.append(buffer.raw[: got * seccomp_bpf.INSTRUCTION.size])
    raise OSError(errno.E2BIG, "more than 4096 filters")


def _detach(libc: ctypes.CDLL, pid: int, signum: int) -> None:
    """Let it go. A leader that has not reached its stop yet cannot be detached (ESRCH): it is
    waited for, then detached, so that it is never left stopped."""
    try:
        _ptrace(libc, PTRACE_DETACH, pid, 0, signum or None)
        return
    except OSError as exc:
        if exc.errno != errno.ESRCH or not os.path.exists(f"/proc/{pid}"):
            return
    with contextlib.suppress(OSError):
        waited, status = os.waitpid(pid, WALL)  # the interrupt's stop comes: then it can go
        if waited == pid and os.WIFSTOPPED(status):
            _ptrace(libc, PTRACE_DETACH, pid, 0, None)


def _attach_refused(exc: OSError) -> str:
    if exc.errno == errno.ESRCH:
        return "it exited before it could be read"
    if exc.errno == errno.EPERM:
        scope = YAMA.read_text().strip() if YAMA.is_file() else None
        if scope == "3":
            return "ptrace attach refused: Yama's kernel.yama.ptrace_scope is 3 (no process may attach)"
        why = f" (Yama ptrace_scope {scope})" if scope not in (None, "0") else ""
        return f"ptrace attach refused (EPERM{why}): explorer lacks CAP_SYS_PTRACE over it, or it is a kernel thread"
    return f"ptrace attach failed: {exc.strerror}"


def _read_refused(exc: OSError) -> str:
    own = mode(os.getpid())[0]
    if exc.errno == errno.EACCES:
        return (
            f"the kernel shows a filter only to a reader with CAP_SYS_ADMIN under no seccomp filter itself "
            f"(explorer's own seccomp: {own})"
        )
    if exc.errno == errno.EINVAL:
        return "PTRACE_SECCOMP_GET_FILTER refused (EINVAL): a kernel without CONFIG_CHECKPOINT_RESTORE"
    if exc.errno == errno.EMEDIUMTYPE:
        return "a filter with no classic BPF program to show (EMEDIUMTYPE)"
    return f"reading its filter failed: {exc.strerror}"


def _name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return "gone"


def classes(reading: Reading, only: frozenset[str] | None = None) -> dict[str, str] | None:
    """{call: allowed | conditional | denied} for every call of the host's architecture, or for
    those named in `only` (None: its filter was not read)."""
    _, calls = seccomp_bpf.native_calls()
    names = [name for name in calls.values() if only is None or name in only]
    if reading.mode == "disabled":
        return dict.fromkeys(names, ALLOWED)
    if reading.mode == "strict":
        return {name: ALLOWED if name in seccomp_bpf.STRICT_CALLS else DENIED for name in names}
    return None if reading.programs is None else seccomp_bpf.classes(reading.programs, only)


def union(maps: Iterable[dict[str, str]]) -> dict[str, str]:
    """What any of several processes may reach: allowed by one, else conditional in one, else denied."""
    out: dict[str, str] = {}
    for found in maps:
        for name, cls in found.items():
            if CLASSES.index(cls) < CLASSES.index(out.get(name, DENIED)):
                out[name] = cls
            out.setdefault(name, cls)
    return out


def figures(readings: list[Reading], maps: list[dict[str, str] | None]) -> dict[str, Any]:
    """{mode, filters, processes, read, reason, allowed, conditional, denied, total} over some
    processes: the counts are the union of those read (None where none was)."""
    modes = sorted({r.mode for r in readings})
    unread = [r for r, m in zip(readings, maps, strict=True) if m is None]
    known = union(m for m in maps if m is not None)
    counts = {cls: sum(1 for c in known.values() if c == cls) if known else None for cls in CLASSES}
    reason = None if readings else "no process of these roles was found"
    if unread:
        reason = f"{len(unread)} of {len(readings)} not read: {unread[0].reason or 'no reason recorded'}"
        reason += "" if len(unread) == len(readings) else "; the counts are those read"
    return {
        "mode": ", ".join(modes) or None,
        "filters": max((r.filters or 0 for r in readings), default=None),
        "processes": len(readings),
        "read": not unread and bool(readings),
        "reason": reason,
        **counts,
        "total": len(known) if known else None,
    }


def evaluated(reading: Reading) -> tuple[Reading, dict[str, str] | None]:
    """The reading with its classes; a filter that cannot be evaluated becomes one not read, with why."""
    try:
        return reading, classes(reading)
    except seccomp_bpf.FilterError as exc:
        return replace(reading, programs=None, reason=f"its filter could not be evaluated: {exc}"), None


def _tracer_named(reading: Reading, pids: dict[int, str]) -> Reading:
    """A reading kept from being read by one of the side's own processes says which role that is."""
    if reading.tracer not in pids or reading.reason is None:
        return reading
    return replace(reading, reason=f"{reading.reason} (PID {reading.tracer} is this side's {pids[reading.tracer]})")


def by_roles(readings: dict[int, Reading], pids: dict[int, str], reach: Collection[str]) -> dict[str, Any]:
    """Each role's seccomp figures, and `reach`: their union over the roles whose system calls
    reach the host's kernel for the workload (the side's own word for them)."""
    done = {pid: evaluated(_tracer_named(reading, pids)) for pid, reading in readings.items()}
    members: dict[str, list[int]] = {}
    for pid, role in pids.items():
        members.setdefault(role, []).append(pid)

    def over(group: list[int]) -> dict[str, Any]:
        return figures([done[p][0] for p in group], [done[p][1] for p in group])

    reaching = [pid for pid, role in pids.items() if role in reach]
    return {
        "by_role": {role: over(group) for role, group in members.items()},
        "reach": {"roles": [role for role in members if role in reach], **over(reaching)},
    }


__all__ = ["ALLOWED", "CONDITIONAL", "DENIED", "METHOD", "NotRead", "Reading", "by_roles", "classes", "read"]
