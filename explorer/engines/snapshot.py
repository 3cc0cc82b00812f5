"""A microVM restored from a memory snapshot instead of booted (what Firecracker and the
serverless platforms built on it do to start VMs): libvirt boots the microVM once per run,
waits until the workload answers, saves the guest's memory and device state to a file
(virDomainSaveFlags), and each start is then a restore of that file (virDomainRestoreFlags
with the domain XML changed for this instance: its forwarded port, a fresh overlay on the
disk as it was at the save, its console, its labels). No kernel boots in a start.

What libvirt allows, measured here (see the README): a restore keeps the saved domain's name
and UUID, so one restored instance runs at a time; the saved state is ~84 MiB for a 512 MiB
redis microVM; the guest's clock stands still while the state sits on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from explorer import readiness
from explorer.contracts import DoctorCheck, EngineDefaults, Progress
from explorer.engines.domain import NS, Hypervisor, hostfwd_path, qemu_process
from explorer.engines.libvirt import LibvirtEngine, Machine
from explorer.engines.storage import disk_storage
from explorer.errors import BackendError, BackendUnavailable
from explorer.guest.handles import RunningVM
from explorer.images.vmdisk import make_overlay
from explorer.model import Artifact, NetPath, SavedSnapshot, Side, Target, free_port
from explorer.scenario import Scenario

STATE = "state.save"  # the saved memory and device state, in the boot's work dir
VIEW_WAIT_S = 15.0
PROCESS_POLL_S = 0.005


class SnapshotEngine(EngineDefaults[RunningVM]):
    name = "libvirt"
    milestones = ("process", "resumed", "ready")  # t0 is the restore call: no kernel boots
    daemons = ("libvirtd", "virtlogd")
    at_once = (1, "libvirt restores a saved state only under the saved domain's name and UUID")

    def __init__(self, side: Side, machine: Machine) -> None:
        self.side, self.machine = side, machine
        self.hypervisor = Hypervisor()  # the connection it restores with, shared with the engine below
        # boots the VM once, and watches and removes every instance, through its public operations
        self.vms = LibvirtEngine(side, machine, self.hypervisor)

    def check(self) -> dict[str, Any]:
        return self.vms.check()

    def doctor_checks(self) -> list[DoctorCheck]:
        return self.vms.doctor_checks()

    def preflight(self, scenario: Scenario) -> None:
        self.vms.preflight(scenario)

    def adopt(self, scenario: Scenario, artifact: Artifact, progress: Progress | None) -> None:
        """Boot the microVM once, wait for its workload, take a view (so the guest has made its
        boot_id before the save), and save its state. The boot's work dir is kept as the
        snapshot (the state file, the disk overlay as the save left it, the staged kernel):
        the run's restores start from it, and release() removes it."""
        self.vms.adopt(scenario, artifact, progress)
        if progress:
            progress(f"{self.side.name}: booting the microVM once, then saving its state")
        t0 = time.monotonic()
        kept: list[Target[RunningVM]] = []
        try:
            target = self.vms.create(scenario, artifact, secrets.token_hex(4), 0)
            kept.append(target)
            artifact.snapshot = self._save(scenario, target, t0)
        except BaseException:
            for target in kept:
                self.vms.destroy(target)
                self.vms.settle()
            raise
        artifact.paths["snapshot"] = str(target.held.workdir)
        with_state(artifact.facts, artifact.snapshot.state_bytes)

    def _save(self, scenario: Scenario, target: Target[RunningVM], t0: float) -> SavedSnapshot:
        vm = target.held
        ready = readiness.until_ready(  # the lifecycle's one wait: its gate timeout is NotReady (exit 4)
            scenario.workload.ready,
            target.host_port,
            target.marks,
            self.vms.ready_after,
            lambda: self.vms.poll(target),
            t0 + scenario.timeouts.vm_ready_s,
            what="the microVM to snapshot",
        )
        view = vm.view.request(VIEW_WAIT_S) if vm.view is not None else None
        state = vm.workdir / STATE
        saving = time.monotonic()
        self.hypervisor.call("saving the VM's state", vm.domain.saveFlags, str(state), None, 0)
        saved = time.monotonic()
        vm.stop()  # the domain is gone with the save; its work dir stays, as the snapshot
        (vm.workdir / "overlay.qcow2").chmod(0o444)  # the disk as the save left it: every restore's backing file
        xml = self.hypervisor.call(
            "reading the saved state's XML", self.hypervisor.conn.saveImageGetXMLDesc, str(state), 0
        )
        (vm.workdir / "domain.xml").write_text(xml)
        return SavedSnapshot(
            domain=target.name,
            boot_to_ready_s=round(ready - t0, 3),
            save_s=round(saved - saving, 3),
            saved_at=saved,
            state_bytes=state.stat().st_size,
            boot_id=view.boot_id if view else None,
        )

    def release(self, artifact: Artifact) -> None:
        folder = artifact.paths.pop("snapshot", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[RunningVM]:
        """A restore of the saved state, its XML changed for this instance."""
        folder = Path(artifact.paths["snapshot"])
        snapshot = artifact.snapshot
        if snapshot is None:
            raise BackendError("the snapshot side was not adopted: no saved state to restore")
        target, workdir = self.vms.new_target(scenario, run_id, index)
        target.name = snapshot.domain  # libvirt restores a state under its saved name only
        t0 = time.monotonic()
        try:
            workdir.chmod(0o711)  # QEMU's user reaches its overlay here, and nothing else
            overlay, console = workdir / "overlay.qcow2", workdir / "console.log"
            make_overlay(folder / "overlay.qcow2", overlay)
            if self.hypervisor.qemu_ids and os.geteuid() == 0:
                os.chown(overlay, *self.hypervisor.qemu_ids)
            port = free_port()
            labels = {"run": run_id, "scenario": scenario.name, "index": index, "pid": os.getpid(), "workdir": workdir}
            xml = restored_xml((folder / "domain.xml").read_text(), port, overlay, console, labels)
            target.mark("process", self._restore(folder / STATE, xml, target.name))
            target.mark("resumed")
            self._attach(target, workdir, console, port, artifact)
        except BaseException:
            with contextlib.suppress(BackendError, BackendUnavailable):
                self.hypervisor.destroy_domain(target.name)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        target.facts["storage"] = disk_storage(xml, artifact.filesystem)  # the I/O table's
        target.facts["snapshot"] = snapshot.record(t0)
        return target

    def _restore(self, state: Path, xml: str, name: str) -> float:
        """restoreFlags in a thread while the pid file of the domain's QEMU is watched: when
        the VMM process appeared."""
        failure: list[BackendError | BackendUnavailable] = []

        def restore() -> None:
            try:
                self.hypervisor.call(f"restoring {name}", self.hypervisor.conn.restoreFlags, str(state), xml, 0)
            except (BackendError, BackendUnavailable) as exc:  # handed to the caller, raised there
                failure.append(exc)

        worker = threading.Thread(target=restore, name=f"restore:{name}")
        worker.start()
        appeared = None
        while worker.is_alive():
            if appeared is None and qemu_process(name) is not None:
                appeared = time.monotonic()
            time.sleep(PROCESS_POLL_S)
        worker.join()
        if failure:
            raise failure[0]
        return appeared or time.monotonic()

    def _attach(self, target: Target[RunningVM], workdir: Path, console: Path, port: int, artifact: Artifact) -> None:
        """Watch the restored domain as the libvirt engine watches a booted one, and record it."""
        domain = self.hypervisor.domain(target.name)
        self.vms.watch(target, domain, workdir, console, port, self.machine.view_port)
        target.facts.update(  # the record
            domain=target.name,
            uuid=domain.UUIDString(),
            memory_mib=artifact.facts["memory_mib"],
            vcpus=artifact.facts.get("vcpus"),
            cpu=artifact.facts.get("cpu"),
            forwarded_ports={},
        )

    def poll(self, target: Target[RunningVM]) -> None:
        self.vms.poll(target)

    def load_paths(self, target: Target[RunningVM]) -> list[NetPath]:
        return [hostfwd_path(target.host_port)]

    def host_pids(self, target: Target[RunningVM]) -> list[int]:
        return []  # the workload runs on the guest's kernel

    def runtime_pids(self, target: Target[RunningVM]) -> dict[int, str]:
        return self.vms.runtime_pids(target)

    def logs(self, target: Target[RunningVM], lines: int = 20) -> str:
        return self.vms.logs(target, lines)

    def diagnosis(self, target: Target[RunningVM]) -> str | None:
        return self.vms.diagnosis(target)

    def destroy(self, target: Target[RunningVM]) -> None:
        self.vms.destroy(target)

    def settle(self) -> None:
        self.vms.settle()

    def clean(self, run_id: str | None = None) -> list[str]:
        """The run's restored domains and work dirs, by their labels (a saved state is the work
        dir of the boot that made it: `explorer clean` removes a dead owner's with the rest)."""
        return self.vms.clean(run_id)


def with_state(facts: dict[str, Any], state: int) -> None:
    """A restore starts from the disk, the kernel and initramfs (QEMU still loads them) and
    the saved state: it counts in both the content and the stored figure."""
    for figure in ("content", "stored"):
        if f"{figure}_bytes" in facts:
            facts[f"{figure}_bytes"] += state
            facts[f"{figure}_parts"] = {**facts.get(f"{figure}_parts", {}), "saved state": state}
            facts[f"{figure}_method"] += " + the saved memory and device state"


def restored_xml(xml: str, port: int, overlay: Path, console: Path, labels: dict[str, Any]) -> str:
    """The saved domain's XML for one restored instance: its forwarded port, its overlay, its
    console, its labels (without new labels `explorer clean` would take a restored domain
    for a leftover of the run that saved it). libvirt refuses any other change (name, UUID,
    memory, devices: the guest's hardware cannot change under a saved state)."""
    xml, forwards = re.subn(r"hostfwd=tcp:127\.0\.0\.1:\d+-:", f"hostfwd=tcp:127.0.0.1:{port}-:", xml, count=1)
    xml, disks = re.subn(
        r"(<disk type='file' device='disk'>.*?<source file=)'[^']*'",
        lambda m: m.group(1) + quoteattr(str(overlay)),
        xml,
        count=1,
        flags=re.DOTALL,
    )
    xml, consoles = re.subn(
        r"(<(?:serial|console) type='file'>\s*<source path=)'[^']*'",
        lambda m: m.group(1) + quoteattr(str(console)),
        xml,
    )
    label = " ".join(f"{key}={quoteattr(str(value))}" for key, value in labels.items())
    xml, marks = re.subn(
        r"<explorer:target [^>]*/>", f"<explorer:target xmlns:explorer={quoteattr(NS)} {label}/>", xml, count=1
    )
    if (forwards, disks, marks) != (1, 1, 1) or consoles < 1:
        raise BackendError("the saved domain's XML is not the shape explorer saved: cannot adapt it for a restore")
    return xml
