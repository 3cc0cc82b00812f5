"""The contracts of a side's parts, and the defaults an engine or source may take.

A side's backend (explorer/backends/base.py) is assembled from three parts: what it starts
from (a Source), what runs it (an Engine), and the channel into the guest (a Channel).
Images, engines and guest channels implement these; nothing here imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from explorer.model import Artifact, GuestView, InsideDelivery, InsideProgram, NetPath, Target
from explorer.scenario import Scenario

Progress = Callable[[str], Any]
H = TypeVar("H")  # the handle an engine's targets hold, and its channel takes (explorer/guest/handles.py)


class DoctorCheck(NamedTuple):
    """A row of `explorer doctor`: what is checked, and a function returning its details or
    raising ExplorerError (with a hint: the fix). An optional check only warns; so do the
    checks of a side whose package this distribution may lack."""

    name: str
    run: Callable[[], str]
    optional: bool = False


class Source(Protocol):
    """What a side starts from."""

    def supports(self, scenario: Scenario) -> str | None:
        """Why this source cannot serve `scenario` (None: it can); asked before anything starts."""

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        """Build or find it; cached, so cheap the second time."""

    def doctor_checks(self) -> list[DoctorCheck]:
        """The tools its build needs, for `explorer doctor`."""

    def remove_cached(self) -> list[str]:
        """What `explorer clean --cache` removes beyond the cache directory (e.g. Docker images)."""


class Engine(Protocol[H]):
    """What runs a side: creates a Target from an Artifact and sees it from the host; its
    targets hold a handle of type H (a Docker container, a RunningVM, a VagrantMachine)."""

    # read-only members: an engine may declare each as a class attribute (of a narrower tuple
    # type), an instance attribute or a property
    @property
    def name(self) -> str:
        """Recorded in results as the side's `backend`."""

    @property
    def milestones(self) -> tuple[str, ...]:
        """What create() and poll() record, in the order they usually happen."""

    @property
    def order(self) -> tuple[tuple[str, ...], ...]:
        """Chains of milestones that cannot go backwards (the timeline check)."""

    @property
    def ready_after(self) -> str | None:
        """A milestone before which no readiness attempt can succeed."""

    @property
    def daemons(self) -> tuple[str, ...]:
        """The host daemons serving it, whose growth density counts per instance."""

    @property
    def at_once(self) -> tuple[int, str] | None:
        """At most this many instances can run at once, and why (None: no limit)."""

    def check(self) -> dict[str, Any]:
        """Facts about the engine (versions, and `summary`: one line); BackendUnavailable with a hint."""

    def doctor_checks(self) -> list[DoctorCheck]: ...
    def preflight(self, scenario: Scenario) -> None: ...
    def adopt(self, scenario: Scenario, artifact: Artifact, progress: Progress | None) -> None: ...
    def release(self, artifact: Artifact) -> None: ...
    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[H]: ...
    def poll(self, target: Target[H]) -> None: ...
    def after_ready(self, target: Target[H]) -> None: ...
    def host_pids(self, target: Target[H]) -> list[int]: ...
    def runtime_pids(self, target: Target[H]) -> dict[int, str]: ...
    def path_pids(self, target: Target[H]) -> dict[int, str]: ...
    def load_paths(self, target: Target[H]) -> list[NetPath]:
        """The ways a load client on the host reaches the workload, the default (the one
        readiness used) first; each on a loopback address."""

    def logs(self, target: Target[H], lines: int = 20) -> str: ...
    def diagnosis(self, target: Target[H]) -> str | None: ...
    def destroy(self, target: Target[H]) -> None: ...
    def settle(self) -> None: ...
    def clean(self, run_id: str | None = None) -> list[str]: ...
    def remove_cached(self) -> list[str]: ...


class Channel(Protocol[H]):
    """How explorer asks the guest about itself, after readiness, through the handle of type H
    its engine's targets hold (the signature says which engines it goes with): its view, and the
    inside probe delivered where the workload runs, run, and removed (nothing left behind)."""

    def view(self, target: Target[H]) -> GuestView: ...

    def inside(self, target: Target[H], program: InsideProgram) -> InsideDelivery:
        """Deliver `program` into the guest (never through a host mount), make each of its runs,
        remove it; BackendError where it cannot be delivered or run at all."""


class EngineDefaults(Generic[H]):
    """What most engines do for the optional steps: nothing. Their milestones happen in the
    order they are listed, always."""

    milestones: tuple[str, ...] = ()

    @property
    def order(self) -> tuple[tuple[str, ...], ...]:
        return (self.milestones,)

    ready_after: str | None = None
    daemons: tuple[str, ...] = ()
    at_once: tuple[int, str] | None = None

    def doctor_checks(self) -> list[DoctorCheck]:
        return []

    def preflight(self, scenario: Scenario) -> None:
        return None

    def adopt(self, scenario: Scenario, artifact: Artifact, progress: Progress | None) -> None:
        return None

    def release(self, artifact: Artifact) -> None:
        return None

    def poll(self, target: Target[H]) -> None:
        return None

    def after_ready(self, target: Target[H]) -> None:
        self.poll(target)

    def diagnosis(self, target: Target[H]) -> str | None:
        return None

    def path_pids(self, target: Target[H]) -> dict[int, str]:
        """Host processes that carry the workload's traffic besides its runtime (none)."""
        return {}

    def load_paths(self, target: Target[H]) -> list[NetPath]:
        """One path: the port readiness used, on the host's 127.0.0.1."""
        return [
            NetPath(
                "port on 127.0.0.1", f"the workload's port on the host's 127.0.0.1:{target.host_port}", target.host_port
            )
        ]

    def settle(self) -> None:
        return None

    def remove_cached(self) -> list[str]:
        return []


class SourceDefaults:
    """What most sources do for the optional questions: support every scenario, need no
    tool of their own, keep nothing outside the cache."""

    def supports(self, scenario: Scenario) -> str | None:
        return None

    def doctor_checks(self) -> list[DoctorCheck]:
        return []

    def remove_cached(self) -> list[str]:
        return []
