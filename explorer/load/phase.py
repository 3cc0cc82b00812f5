"""The load phase of a run (explorer/lifecycle.py's run plan): each side's probed start under
the standard load, from the host; then, once every side is done, the native reference under
the same load."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from explorer.backends.base import Backend
from explorer.errors import BackendUnavailable, ExplorerError
from explorer.images.container.source import ContainerImage
from explorer.load import client_for, native, rounds
from explorer.model import Accel, Artifact, NetPath, Target
from explorer.scenario import Scenario

H = TypeVar("H")  # the handle a side's targets hold: passed along, never read here

TCG_NOTE = (
    "under TCG (software emulation) a VM's figures measure the emulator, not what a KVM host shows: "
    "its guest's work runs as QEMU's own user code, which makes no system call"
)


@dataclass
class LoadPhase:
    settings: rounds.Settings
    rootfs: Path | None = None  # the workload's root filesystem, unpacked (pgbench comes from it)
    document: dict[str, Any] = field(default_factory=dict)  # the result document's `load`

    def begin(self, scenario: Scenario) -> dict[str, Any]:
        """The document's `load`: the settings, and the native reference still to measure (by
        reference(), when the first side is about to be loaded)."""
        self.document = {
            "settings": {
                "seconds_per_round": self.settings.seconds,
                "rounds": self.settings.rounds,
                "traced_round": self.settings.trace,
                "paths": "every path a side offers" if self.settings.every_path else "each side's first path only",
            },
            "client": None if scenario.load is None else client_for(scenario.load).describe(),
            "native": {"status": "not measured", "reason": "no side reached its probed start"},
        }
        if scenario.load is None:
            why = f"the scenario names no standard load (its readiness, {scenario.workload.ready.kind}, knows no protocol)"
            self.document["native"] = {"status": "skipped", "reason": why}
        return self.document

    @property
    def pending(self) -> bool:
        return self.document.get("native", {}).get("status") == "not measured"

    def root(self, scenario: Scenario, say: Callable[[str], Any]) -> tuple[Artifact, Path]:
        """The workload's image and its root filesystem unpacked (once, into the cache): the
        native reference runs from it, and a client the image carries (pgbench) too."""
        artifact = ContainerImage().prepare(scenario, say)
        self.rootfs = native.unpacked_root(scenario, artifact, say)
        return artifact, self.rootfs

    def reference(self, scenario: Scenario, say: Callable[[str], Any]) -> None:
        """The native reference measured, after the sides (none of them is running then); a
        run that fails on a side does not wait for it."""
        assert scenario.load is not None
        say("the native reference: the same server from the same root filesystem, on the host")
        try:
            artifact, root = self.root(scenario, say)
        except (BackendUnavailable, ExplorerError) as exc:
            self.document["native"] = {"status": "skipped", "reason": f"its root filesystem cannot be had: {exc}"}
            return
        server = native.NativeReference(scenario, artifact, root)
        try:
            endpoint = server.start()
            say("the native reference: under load")
            measured = rounds.measure(client_for(scenario.load), endpoint, self.settings, server.net_path)
        except ExplorerError as exc:
            measured = {"status": "failed", "reason": str(exc), "logs": server.logs()}
        finally:
            server.stop()
        self.document["native"] = {**measured, "how": native.__doc__.split("\n\n")[1].replace("\n", " ")}

    def side(
        self, backend: Backend[H], scenario: Scenario, target: Target[H], accel: Accel | None, say: Callable[[str], Any]
    ) -> dict[str, Any]:
        """The probed start of a side under the same load (`accel`: a VM's, None for a container)."""
        if scenario.load is None:
            return {"status": "skipped", "reason": "the scenario names no standard load"}
        if self.rootfs is None and client_for(scenario.load).IN_ROOTFS:
            try:
                self.root(scenario, say)
            except (BackendUnavailable, ExplorerError) as exc:
                return {"status": "skipped", "reason": f"the client is in the image, which cannot be had: {exc}"}
        paths = backend.load_paths(target)
        if not self.settings.every_path:
            paths = paths[:1]
        say(f"{backend.side.name}: under load, on {' and '.join(path.name for path in paths)}")
        measured = [(path, None if path.missing else self.endpoint(backend, target, path, accel)) for path in paths]
        out = rounds.measure_paths(client_for(scenario.load), measured, self.settings)
        if accel is not None and not accel.kvm:
            out["note"] = TCG_NOTE
        return out

    def endpoint(self, backend: Backend[H], target: Target[H], path: NetPath, accel: Accel | None) -> rounds.Endpoint:
        """Where the load goes on `path`, and who serves it on the host."""
        return rounds.Endpoint(
            path.host,
            path.port,
            lambda: host_processes(backend, target, path),
            lambda: backend.poll(target),
            lambda: backend.logs(target),
            prefix=list(path.prefix),
            rootfs=self.rootfs,
            kvm_roles=frozenset({"VMM"}) if accel is not None and accel.kvm else frozenset(),
            kernel_roles=frozenset(backend.side.kernel_roles),
            gone=lambda: still_missing(backend, target, path),
            inside=path.inside,
        )


def host_processes(backend: Backend[H], target: Target[H], path: NetPath | None = None) -> dict[int, str]:
    """Every host process that does the side's work, by role: its runtime (shim, sandbox, gofer,
    stubs, VMM), the workload's own processes where the host sees them, and what carries its
    traffic on the host on this path (Docker's userland proxy for a published port)."""
    pids = dict(backend.runtime_pids(target))
    with contextlib.suppress(ExplorerError):
        pids |= dict.fromkeys(backend.host_pids(target), "workload")
    if path is None or path.relay:
        pids |= backend.path_pids(target)
    return pids


def still_missing(backend: Backend[H], target: Target[H], path: NetPath) -> str | None:
    """Why `path` no longer reaches the workload, asked of the side again (its network
    namespace gone, say) once a client on it has failed."""
    again = next((p for p in backend.load_paths(target) if p.name == path.name), None)
    return "the side no longer offers this path" if again is None else again.missing
