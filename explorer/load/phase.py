"""The load phase of a run (explorer/lifecycle.py's run plan): the native reference first, then
each side's probed start under the same load, from the host."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.backends.base import Backend
from explorer.errors import BackendUnavailable, ExplorerError
from explorer.images.container.source import ContainerImage
from explorer.load import native, rounds
from explorer.model import Target
from explorer.scenario import Scenario

TCG_NOTE = (
    "under TCG (software emulation) a VM's figures measure the emulator, not what a KVM host shows: "
    "its guest's work runs as QEMU's own user code, which makes no system call"
)


@dataclass
class LoadPhase:
    settings: rounds.Settings
    rootfs: Path | None = None  # the workload's root filesystem, unpacked (pgbench comes from it)

    def reference(self, scenario: Scenario, say: Callable[[str], Any]) -> dict[str, Any]:
        """The document's `load`: the settings, and the native reference measured."""
        out: dict[str, Any] = {
            "settings": {
                "seconds_per_round": self.settings.seconds,
                "rounds": self.settings.rounds,
                "traced_round": self.settings.trace,
            },
            "client": None if scenario.load is None else scenario.load.client().describe(),
        }
        if scenario.load is None:
            why = f"the scenario names no standard load (its readiness, {scenario.workload.ready.kind}, knows no protocol)"
            return {**out, "native": {"status": "skipped", "reason": why}}
        say("the native reference: the same server from the same root filesystem, on the host")
        try:
            artifact = ContainerImage().prepare(scenario, say)
            self.rootfs = native.unpacked_root(scenario, artifact, say)
        except (BackendUnavailable, ExplorerError) as exc:
            return {**out, "native": {"status": "skipped", "reason": f"its root filesystem cannot be had: {exc}"}}
        reference = native.NativeReference(scenario, artifact, self.rootfs)
        try:
            endpoint = reference.start()
            say("the native reference: under load")
            measured = rounds.measure(scenario.load.client(), endpoint, self.settings)
        except ExplorerError as exc:
            measured = {"status": "failed", "reason": str(exc), "logs": reference.logs()}
        finally:
            reference.stop()
        return {**out, "native": {**measured, "how": native.__doc__.split("\n\n")[1].replace("\n", " ")}}

    def side(self, backend: Backend, scenario: Scenario, target: Target, say: Callable[[str], Any]) -> dict[str, Any]:
        """The probed start of a side under the same load."""
        if scenario.load is None:
            return {"status": "skipped", "reason": "the scenario names no standard load"}
        say(f"{backend.side.name}: under load")
        endpoint = rounds.Endpoint(
            "127.0.0.1",
            target.host_port,
            lambda: host_processes(backend, target),
            lambda: backend.poll(target),
            lambda: backend.logs(target),
            rootfs=self.rootfs,
            kvm_roles=frozenset({"VMM"}) if target.facts.get("accel") == "kvm" else frozenset(),
        )
        out = rounds.measure(scenario.load.client(), endpoint, self.settings)
        if target.facts.get("accel") == "tcg":
            out["note"] = TCG_NOTE
        return out


def host_processes(backend: Backend, target: Target) -> dict[int, str]:
    """Every host process that does the side's work, by role: its runtime (shim, sandbox, gofer,
    stubs, VMM), the workload's own processes where the host sees them, and what carries its
    traffic on the host (Docker's userland proxy)."""
    pids = dict(backend.runtime_pids(target))
    with contextlib.suppress(ExplorerError):
        pids |= dict.fromkeys(backend.host_pids(target), "workload")
    pids |= backend.engine.path_pids(target)
    return pids
