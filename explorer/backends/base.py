"""The contract every backend keeps, so probes are written once for both sides.

A backend turns a scenario into a running Target and answers questions about it from two
points of view: the host's (which PIDs, which runtime process) and the guest's (what a
process listing, the kernel and boot_id look like from inside).
"""

from __future__ import annotations

import abc
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from explorer.scenario import Scenario

if TYPE_CHECKING:
    from explorer.sides import Side

LABEL_MANAGED = "io.explorer.managed"  # on what a run creates: containers, domains
LABEL_IMAGE = "io.explorer.image"  # on cached images; containers inherit it, so it must differ
LABEL_RUN = "io.explorer.run"
LABEL_SCENARIO = "io.explorer.scenario"
LABEL_RECIPE = "io.explorer.recipe"
LABEL_OWNER = "io.explorer.owner"  # the PID of the explorer process that made it: clean spares a live run's


def owner_alive(pid: str | int | None) -> bool:
    """Whether the explorer process that made a container, domain or work file still runs
    (not counting this one: what this process itself labelled is never a live *other* run).
    Unlabelled (made before owners were recorded, or by hand) counts as not alive."""
    import psutil

    text = str(pid if pid is not None else "")
    return text.isdigit() and int(text) != os.getpid() and psutil.pid_exists(int(text))


@dataclass
class Artifact:
    """What a backend built or found to start from: an image, or a VM disk + kernel."""

    ref: str
    facts: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


@dataclass
class Target:
    """A running workload. `marks` are monotonic timestamps of startup milestones."""

    side: str
    name: str
    run_id: str
    host_port: int
    handle: Any = None
    marks: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def mark(self, milestone: str, when: float | None = None) -> None:
        self.marks.setdefault(milestone, time.monotonic() if when is None else when)


@dataclass
class GuestProcess:
    pid: int
    ppid: int
    name: str
    kernel_thread: bool


@dataclass
class GuestView:
    """What the workload's own environment says about itself, seen from inside."""

    kernel_release: str
    boot_id: str | None
    processes: list[GuestProcess]
    channel: str  # how it was obtained: "docker exec", "virtio-serial port explorer.view", ...
    agent_pids: list[int] = field(default_factory=list)  # explorer's own, left out of processes


class Backend(abc.ABC):
    """One engine, run as one side of the registry (explorer/sides.py) that names it."""

    NAME: str = ""
    # Names of the milestones create() and poll() record, in the order they happen.
    MILESTONES: tuple[str, ...] = ()
    # A milestone before which no readiness attempt can succeed; QEMU's hostfwd accepts and
    # holds connections until the guest's network is up, so trying earlier only costs time.
    READY_AFTER: str | None = None

    def __init__(self, side: Side) -> None:
        self.side = side

    def supports(self, scenario: Scenario) -> str | None:
        """Why this side cannot run `scenario` (None: it can); asked before anything starts."""
        return None

    @abc.abstractmethod
    def check(self) -> dict[str, Any]:
        """Facts about the engine (versions); raises BackendUnavailable with a hint."""

    def preflight(self, scenario: Scenario) -> None:
        """Refuse (UsageError) what this side cannot run on this host, before any side starts."""

    def diagnosis(self, target: Target) -> str | None:
        """A likely cause when the target failed or was not ready (e.g. out of memory), or None."""
        return None

    @abc.abstractmethod
    def prepare(self, scenario: Scenario, progress: Any = None) -> Artifact:
        """Build or find what the workload starts from; cached, so cheap the second time."""

    @abc.abstractmethod
    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target:
        """Create and start the workload; marks 'created' (and what else it can see)."""

    def poll(self, target: Target) -> None:
        """Record any milestone reached since the last call (cheap; called in wait loops)."""

    def after_ready(self, target: Target) -> None:
        """Once the workload answers: record the milestones that may come after it (bounded)."""
        self.poll(target)

    @abc.abstractmethod
    def host_pids(self, target: Target) -> list[int]:
        """Host PIDs of the workload's own processes (empty where the host cannot see them)."""

    @abc.abstractmethod
    def runtime_pids(self, target: Target) -> dict[int, str]:
        """Host PIDs of what runs the workload (the shim, gVisor's sandbox, the VMM), each with
        its role, one of the side's roles."""

    @abc.abstractmethod
    def guest_view(self, target: Target) -> GuestView:
        """The workload environment's own view: kernel, boot_id, process listing."""

    @abc.abstractmethod
    def logs(self, target: Target, lines: int = 20) -> str:
        """The last lines the workload (or the guest's console) printed."""

    @abc.abstractmethod
    def destroy(self, target: Target) -> None:
        """Remove the target and everything created for it; idempotent."""

    def settle(self) -> None:
        """Wait for what destroy() left finishing in the background (none by default): the next
        start's measured window must not overlap an earlier instance's teardown."""

    @abc.abstractmethod
    def clean(self, run_id: str | None = None) -> list[str]:
        """Remove every labelled leftover (of one run, or of all); returns what was removed."""
