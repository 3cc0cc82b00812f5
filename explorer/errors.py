"""One exception root for explorer; each kind carries its exit code and a hint for the user.

Third-party errors (docker, libvirt, subprocess) are wrapped once, at the backend boundary,
so the CLI is the only place that turns an error into an exit.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_READY = 4
EXIT_INTERRUPTED = 130  # SIGINT; any interrupt exits 128 + its signal (explorer/interrupts.py)


class ExplorerError(Exception):
    """A step failed; the run cleaned up after itself."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(ExplorerError):
    """Bad input from the user: an unknown scenario, a bad flag value."""

    exit_code = EXIT_USAGE


class ScenarioError(UsageError):
    """A scenario file that does not validate; carries every problem at once."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = problems
        text = "invalid scenario:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text, hint)


class CacheUnusable(UsageError):
    """$EXPLORER_CACHE cannot be written: exit 2, a setting of the user's to change (checked
    before a run builds anything, and before `clean --cache` removes anything)."""


class BackendUnavailable(ExplorerError):
    """A daemon or tool explorer needs is missing or not answering."""

    exit_code = EXIT_UNAVAILABLE


class BuildError(ExplorerError):
    """An image, disk, kernel or initramfs could not be built or fetched."""


class BackendError(ExplorerError):
    """The container engine or hypervisor refused an operation."""


class NotReady(ExplorerError):
    """The workload did not answer its readiness check before the deadline."""

    exit_code = EXIT_NOT_READY
