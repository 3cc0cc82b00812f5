"""conmon, Podman's monitor of each container and of each exec session: found by its command
line (`-c ID -n NAME`, `--exec-attach` for an exec's), waited for, and ended.

A container's conmon runs `podman container cleanup` once the container died, then exits. An
exec session's conmon waits Podman's exit_command_delay (5 minutes by default) after the exec
ended before it runs its own cleanup: one of an exec into a removed container lives on that long
unless it is ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

CONMON_EXIT_S = 10.0  # conmon runs `podman container cleanup` once its container died: ~0.3 s here


def conmons() -> dict[int, tuple[str, str]]:
    """Every conmon of explorer's containers: PID -> (container ID, container name)."""
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0].endswith("conmon") and "-c" in argv and "-n" in argv[:-1]:
            cid, name = argv[argv.index("-c") + 1], argv[argv.index("-n") + 1]
            if name.startswith("explorer-"):
                found[pid] = (cid, name)
    return found


def conmons_of(container_id: str, execs_only: bool = False) -> list[int]:
    """The container's conmons (those of its exec sessions only: `--exec-attach`)."""
    found = []
    for pid, (cid, _name) in conmons().items():
        if cid == container_id:
            if execs_only:
                with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"\0--exec-attach\0" not in handle.read():
                        continue
            found.append(pid)
    return found


def kill_conmons(container_id: str, execs_only: bool = False) -> list[int]:
    """SIGKILL to the container's (exec) conmons, waited for until they are gone."""
    pids = conmons_of(container_id, execs_only)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, CONMON_EXIT_S)
    return pids


def wait_for_conmons(container_id: str) -> None:
    """Until the removed container's conmons are gone: its own ends once `podman container
    cleanup` has run; one still there after CONMON_EXIT_S (an exec's, say) is killed."""
    left = _wait_gone(conmons_of(container_id), CONMON_EXIT_S)
    if left:
        kill_conmons(container_id)


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait until none of `pids` runs (a zombie counts as gone); those still running after."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = [p for p in pids if _running(p)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
