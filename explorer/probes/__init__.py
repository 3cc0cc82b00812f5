"""Probes: one module per question, each a function of what the host sees and what the guest
says about itself, returning plain data with the unit in every name. A probe never starts or
stops anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from explorer.model import Accel, Artifact, GuestView
from explorer.scenario import Scenario


@dataclass
class ProbeContext:
    side: str  # the side's name in the registry (explorer/sides.py)
    kind: str  # container or vm
    scenario: Scenario
    artifact: Artifact
    workload_pids: list[int]  # host PIDs of the workload's own processes ([] for a VM or gVisor)
    runtime_pids: dict[int, str]  # host PID -> role (shim, sandbox, gofer, stub, VMM)
    guest: GuestView | None
    guest_error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # backend facts about the target
    roles: tuple[str, ...] = ()  # the side's process roles, the main one first
    accel: Accel | None = None  # a VM's accelerator (kvm or tcg, proven by a boot test); None: no VM

    @property
    def accel_mode(self) -> str:
        """kvm or tcg for a VM; native for a container."""
        return self.accel.mode if self.accel is not None else "native"
