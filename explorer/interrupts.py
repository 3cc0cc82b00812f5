"""Interrupts: SIGINT, SIGTERM and SIGHUP end a run, and everything it made is removed.

An interrupt is not an error a step may catch and report: `Interrupted` derives from
BaseException (as KeyboardInterrupt does), so an `except ExplorerError` or `except Exception`
around a probe lets it through, and only the CLI turns it into an exit (128 + the signal).
Where a step must not be cut in half (an engine making a container whose handle cleanup
needs, the cleanup itself), the signal is deferred until the step is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each ends a run, its resources removed


class Interrupted(BaseException):
    """A signal ended the run; raised so that `finally` blocks still clean up."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}; everything this run created was removed")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: Any) -> NoReturn:
    raise Interrupted(signum)


def install() -> None:
    """SIGTERM and SIGHUP raise Interrupted (SIGINT is Python's KeyboardInterrupt already); a
    SIGHUP that nohup ignores stays ignored."""
    for signum in INTERRUPTS[1:]:
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Let a step finish (cleanup, or a create whose handle cleanup needs): a SIGINT, SIGTERM
    or SIGHUP arriving during it takes effect once it is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = [sig for sig in INTERRUPTS if signal.getsignal(sig) is not signal.SIG_IGN]  # ignored stays ignored
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been
