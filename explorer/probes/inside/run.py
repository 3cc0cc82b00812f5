"""Running the inside probe and reading what it prints.

Where it runs in a side is phase 2's (a channel delivers and starts it); here it runs as a plain
host process: the host's own values for the comparison (host_reference), and the native row
(native_row: as a plain user and as root). Each run has a deadline twice over: the probe's own
--timeout (it exits 124 saying what it was doing), and explorer's, a little later, which ends the
probe's whole session should its own not fire. A run that printed nothing usable is a
ProbeFailure that says which deadline ended it.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from explorer.errors import ExplorerError
from explorer.model import HOST_KERNEL
from explorer.probes.inside import build
from explorer.probes.inside.view import view
from explorer.result.inside import InsideRow, InsideRun, ProbeDocument, ProbeFailure
from explorer.tools import run_session

TIMEOUT_S = 20  # the probe takes tens of milliseconds natively; a side's channel adds its own
GRACE_S = 5.0  # after the probe's own --timeout, explorer ends it
TIMED_OUT = 124  # the probe's exit status at its own --timeout
DROP_FAILED = 3  # the probe's exit status when --uid/--gid could not be assumed
NOBODY = (65534, 65534)


class InsideProbeError(ExplorerError):
    """The inside probe printed something that is not its document."""


def parse(stdout: str) -> ProbeDocument:
    """The probe's stdout as its typed document; an error names each field that does not fit."""
    try:
        return ProbeDocument.model_validate_json(stdout)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5]]
        raise InsideProbeError("the inside probe's output is not its document: " + "; ".join(problems)) from exc


@dataclass(frozen=True)
class Finished:
    """One run: the document it printed, or why there is none; and its wall time."""

    doc: ProbeDocument | None
    failure: ProbeFailure | None
    wall_s: float


def probe_argv(
    binary: Path | str, user: tuple[int, int] | None = None, timeout_s: int = TIMEOUT_S, extra: tuple[str, ...] = ()
) -> list[str]:
    """The probe's command line (a channel into a side runs the same, with its own path)."""
    argv = [str(binary), "--timeout", str(timeout_s)]
    if user is not None:
        argv += ["--uid", str(user[0]), "--gid", str(user[1])]
    return [*argv, *extra]


def finished(argv: list[str], returncode: int | None, stdout: str, stderr: str, wall_s: float) -> Finished:
    """What one run's exit status and output amount to (a timeout of explorer's is returncode None)."""
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    if returncode is None:
        return _failed(
            f"the probe outlived its own --timeout and was ended by explorer ({argv[0]})", True, None, tail, wall_s
        )
    if returncode == TIMED_OUT:
        return _failed(f"the probe gave up at its own --timeout: {tail}", True, returncode, tail, wall_s)
    try:
        doc = parse(stdout)
    except InsideProbeError as exc:
        return _failed(f"{exc} (exit status {returncode})", False, returncode, tail, wall_s)
    if not doc.user.assumed:
        return _failed(
            f"the probe could not become the user asked for: {doc.user.error}", False, returncode, tail, wall_s
        )
    if returncode != 0:
        return _failed(f"the probe exited {returncode}", False, returncode, tail, wall_s)
    return Finished(doc, None, wall_s)


def _failed(error: str, timed_out: bool, code: int | None, tail: str, wall_s: float) -> Finished:
    return Finished(None, ProbeFailure(error=error, timed_out=timed_out, exit_code=code, stderr_tail=tail), wall_s)


def run_native(
    binary: Path | None = None,
    user: tuple[int, int] | None = None,
    timeout_s: int = TIMEOUT_S,
    extra: tuple[str, ...] = (),
) -> Finished:
    """The probe as a plain host process (as `user`, through its own --uid/--gid, when given)."""
    argv = probe_argv(binary or build.build(), user, timeout_s, extra)
    start = time.monotonic()
    try:
        done = run_session(argv, timeout=timeout_s + GRACE_S)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return finished(argv, None, "", err, time.monotonic() - start)
    return finished(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def host_reference(binary: Path | None = None, timeout_s: int = TIMEOUT_S) -> Finished:
    """The host's own values, for the comparison: the probe run natively as explorer runs (root)."""
    return run_native(binary, None, timeout_s)


def native_row(binary: Path | None = None, user: tuple[int, int] = NOBODY, timeout_s: int = TIMEOUT_S) -> InsideRow:
    """The native row: the probe as a plain host process, as root (which is also the host's
    reference) and as a plain user (nobody), each classified and compared with the root run."""
    binary = binary or build.build()
    root = host_reference(binary, timeout_s)
    plain = run_native(binary, user, timeout_s)
    runs = [
        _run(f"root ({os.geteuid()}:{os.getegid()})", root, root),
        _run(f"nobody ({user[0]}:{user[1]})", plain, root),
    ]
    return InsideRow(side="native", runs=runs)


def _run(as_user: str, run: Finished, host: Finished) -> InsideRun:
    if run.doc is None:
        return InsideRun(as_user=as_user, wall_s=run.wall_s, view=None, failure=run.failure)
    gap_s = run.wall_s + host.wall_s  # the two readings were at most this far apart
    return InsideRun(as_user=as_user, wall_s=run.wall_s, view=view(run.doc, host.doc, HOST_KERNEL, gap_s), failure=None)
