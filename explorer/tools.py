"""The host's tools (mmdebstrap, apt-get, mke2fs, qemu-img) run in a session of their own, so that
whatever ends a build (a timeout, SIGINT, SIGTERM, SIGHUP) ends all of it: mmdebstrap's
apt and dpkg children too, not only the process explorer started.

Each tool also gets SIGTERM should explorer itself die (kill -9): mmdebstrap then unmounts
what it mounted in its chroot and exits, instead of building on for nobody.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Any

import psutil

from explorer import interrupts
from explorer.errors import BuildError

GRACE_S = 15.0  # mmdebstrap unmounts its chroot's /dev, /proc and /sys on SIGTERM: let it


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """`argv` run through util-linux's setpriv, which asks the kernel for SIGTERM on our death
    and execs it (a preexec_fn could do the same, but is unsafe with threads running)."""
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(argv[0])  # as Popen would: "X is not installed", not setpriv's 127
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def run_session(argv: list[str], timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run(argv, capture_output=True, text=True) in a new session; on a timeout
    or any exception (an interrupt), the whole session is ended before it propagates."""
    proc = subprocess.Popen(
        with_parent_death_signal(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with interrupts.deferred():  # a second Ctrl-C must not leave the build half-ended
            end_session(proc)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def session_members(sid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def end_session(proc: subprocess.Popen[str], grace_s: float = GRACE_S) -> None:
    """SIGTERM to the tool's process group, then SIGKILL to every process left in its session
    (children that made groups of their own included); returns once all are gone."""
    sid = proc.pid  # start_new_session: the session and group ids are the child's pid
    try:
        os.killpg(sid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)  # the tool itself (its pipes may stay open in a straggler)
    except subprocess.TimeoutExpired:
        pass
    for _ in range(50):
        members = session_members(sid)
        if not members:
            break
        for member in members:
            try:
                member.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(members, timeout=0.5)
    if proc.poll() is None:
        proc.kill()
    proc.communicate()  # every writer is gone: drain and close the pipes


SETUP_HINT = "run scripts/setup-host"


def run_tool(argv: list[str], what: str, hint: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A build tool, in a session of its own (ended whole on a timeout or an interrupt); a
    missing tool, a failure or a timeout becomes a BuildError carrying the tail of its output."""
    try:
        done = run_session(argv, **kwargs)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return done
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: {argv[0]} is not installed", hint=hint or SETUP_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: {argv[0]} did not finish in {exc.timeout:.0f}s", hint=hint) from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-10:])
        raise BuildError(f"{what} failed ({' '.join(argv)} exited {exc.returncode}):\n{tail}", hint=hint) from exc
