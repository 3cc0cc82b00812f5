"""A side's backend, assembled from three parts with small contracts:

- what it starts from (a Source: an image, a VM disk, a box), built or found by `prepare`;
- the engine that runs it (Docker with a runtime, libvirt with a machine profile, Vagrant):
  create, the milestones it can see, the host processes, destroy and clean;
- the channel into the guest (docker exec, the microVM's view port, the guest agent, ssh).

The lifecycle, density, the load phase and the benchmarks talk to a Backend only (nothing
outside backends/ and engines/ reaches for its engine); a Backend forwards to its parts,
and every fact that differs between sides (engine daemons, doctor checks, what `clean` and
`clean --cache` remove) is asked of them, never looked up by a side's name. The parts
are plain objects: a side shares parts with another by holding the same kind of part (the
Vagrant side has the full-OS image and an ssh channel; it is not a kind of libvirt backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic

from explorer.contracts import Channel, DoctorCheck, Engine, H, Progress, Source
from explorer.model import Artifact, GuestView, InsideDelivery, InsideProgram, NetPath, Side, Target
from explorer.scenario import Scenario

__all__ = ["Backend", "Channel", "Engine", "Source"]


@dataclass
class Backend(Generic[H]):
    """One side of the registry, made of its parts: the engine's targets hold handles of type
    H, and the channel takes that type (a type checker sees a mismatched assembly)."""

    side: Side
    source: Source
    engine: Engine[H]
    channel: Channel[H]

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def milestones(self) -> tuple[str, ...]:
        return self.engine.milestones

    @property
    def order(self) -> tuple[tuple[str, ...], ...]:
        """Chains of milestones that cannot go backwards (the timeline check)."""
        return self.engine.order

    @property
    def ready_after(self) -> str | None:
        """The milestone before which no readiness attempt can succeed (None: none)."""
        return self.engine.ready_after

    @property
    def daemons(self) -> tuple[str, ...]:
        """The host daemons serving the side, whose growth density counts per instance."""
        return self.engine.daemons

    @property
    def at_once(self) -> tuple[int, str] | None:
        """At most this many instances at once, and why (None: no limit)."""
        return self.engine.at_once

    def supports(self, scenario: Scenario) -> str | None:
        return self.source.supports(scenario)

    def check(self) -> dict[str, Any]:
        return self.engine.check()

    def preflight(self, scenario: Scenario) -> None:
        """Refuse (UsageError) what this side cannot run on this host, before any side starts."""
        self.engine.preflight(scenario)

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        artifact = self.source.prepare(scenario, progress)
        self.engine.adopt(scenario, artifact, progress)
        return artifact

    def release(self, artifact: Artifact) -> None:
        """What prepare made for this run only (not the cache), removed once the side is done."""
        self.engine.release(artifact)

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[H]:
        return self.engine.create(scenario, artifact, run_id, index)

    def poll(self, target: Target[H]) -> None:
        self.engine.poll(target)

    def after_ready(self, target: Target[H]) -> None:
        self.engine.after_ready(target)

    def host_pids(self, target: Target[H]) -> list[int]:
        return self.engine.host_pids(target)

    def runtime_pids(self, target: Target[H]) -> dict[int, str]:
        return self.engine.runtime_pids(target)

    def path_pids(self, target: Target[H]) -> dict[int, str]:
        """Host processes that carry the workload's traffic besides its runtime (docker-proxy)."""
        return self.engine.path_pids(target)

    def load_paths(self, target: Target[H]) -> list[NetPath]:
        return self.engine.load_paths(target)

    def guest_view(self, target: Target[H]) -> GuestView:
        return self.channel.view(target)

    def inside(self, target: Target[H], program: InsideProgram) -> InsideDelivery:
        """The inside probe delivered where the workload runs, run, removed (the channel's)."""
        return self.channel.inside(target, program)

    def logs(self, target: Target[H], lines: int = 20) -> str:
        return self.engine.logs(target, lines)

    def diagnosis(self, target: Target[H]) -> str | None:
        return self.engine.diagnosis(target)

    def destroy(self, target: Target[H]) -> None:
        self.engine.destroy(target)

    def settle(self) -> None:
        self.engine.settle()

    def clean(self, run_id: str | None = None) -> list[str]:
        return self.engine.clean(run_id)

    def remove_cached(self) -> list[str]:
        return [*self.engine.remove_cached(), *self.source.remove_cached()]

    def doctor_checks(self) -> list[DoctorCheck]:
        return [*self.engine.doctor_checks(), *self.source.doctor_checks()]
