"""libvirt as an engine: a transient QEMU domain per start, booted from the side's disk,
kernel and initramfs; the host reaches the guest only through QEMU's user-mode hostfwd on
127.0.0.1. The VMM is all the host sees of the workload: milestones come from the VMM
process, the guest's serial console (a file) and whatever the side's machine profile probes.

A side differs from another VM side by its Machine (memory floor, forwarded ports, serial
channels, milestones), not by a subclass: the microVM and the full-OS VM are two profiles of
this one engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from explorer.contracts import DoctorCheck, EngineDefaults, Progress
from explorer.engines.domain import (
    DomainSpec,
    Hypervisor,
    channel_path,
    check_memory,
    domain_xml,
    hostfwd_path,
    in_guest_path,
    killed,
    qemu_process,
    stage,
)
from explorer.engines.storage import disk_storage
from explorer.errors import BackendError, BackendUnavailable
from explorer.guest.handles import RunningVM
from explorer.guest.viewport import ViewChannel
from explorer.kvm import kvm_usable
from explorer.model import Artifact, NetPath, Side, Target, free_port, owner_alive
from explorer.scenario import Scenario

WORKDIR_PREFIX = "explorer-vm-"  # explorer-vm-RUN-INDEX-PID-xxxx
# Guest init marks after which the workload will never answer: fail now, not at the deadline.
FATAL_MARKS = ("initramfs-error", "config-error", "workdir-error", "net-error", "workload-exited")
OOM_SIGNS = (
    "Out of memory",
    "oom-kill",
    "Initramfs unpacking failed",
    "not enough memory",
    "System is deadlocked on memory",
)
SMALL_VM_MIB = 128  # measured under TCG: 128 MiB boots redis, 64 MiB prints nothing at all
PORT_TRIES = 3


class MilestoneProbe(Protocol):
    """A milestone the host checks for itself while a VM boots (the guest's network answers,
    the agent answers, sshd's banner), keeping what it needs between polls in `state` (the
    target's own, closed with it)."""

    # read-only: a probe is a frozen dataclass
    @property
    def milestone(self) -> str: ...

    @property
    def every_s(self) -> float:
        """At most this often (a blocking check); 0: at every poll (a non-blocking one)."""

    def reached(self, target: Target[RunningVM], state: dict[str, Any]) -> bool: ...
    def close(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Machine:
    """What a VM side sets in its domain, and how it watches it boot."""

    milestones: tuple[str, ...]
    # milestone -> what marks it on the console: "kernel" (the kernel's banner) or a mark's name
    console_milestones: dict[str, str]
    ready_after: str | None = None  # no readiness attempt before this milestone
    min_memory_mib: int = 0  # a floor under the scenario's vm.memory_mib
    extra_ports: tuple[int, ...] = ()  # guest ports forwarded to 127.0.0.1 besides the workload's
    agent: bool = False  # a qemu-guest-agent channel
    view_port: str = ""  # a virtio-serial port explorer's init answers view requests on
    probes: tuple[MilestoneProbe, ...] = ()
    wait_after_ready: tuple[str, ...] = ()  # milestones that may come after readiness, waited for
    chains: tuple[tuple[str, ...], ...] = ()  # the timeline check's chains (default: milestones, in order)
    after_ready_s: float = 60.0

    def memory_mib(self, scenario: Scenario) -> int:
        return max(scenario.vm.memory_mib, self.min_memory_mib)


class LibvirtEngine(EngineDefaults[RunningVM]):
    name = "libvirt"
    daemons = ("libvirtd", "virtlogd")

    def __init__(self, side: Side, machine: Machine, hypervisor: Hypervisor | None = None) -> None:
        self.side, self.machine = side, machine
        self.hypervisor = hypervisor or Hypervisor()
        self.milestones, self.ready_after = machine.milestones, machine.ready_after
        self._removing: dict[str, threading.Thread] = {}  # libvirt's bookkeeping of killed VMs (destroy)
        self._removal_errors: list[BackendError | BackendUnavailable] = []

    @property
    def order(self) -> tuple[tuple[str, ...], ...]:
        return self.machine.chains or (self.machine.milestones,)

    def check(self) -> dict[str, Any]:
        return self.hypervisor.check()

    def doctor_checks(self) -> list[DoctorCheck]:
        def libvirt_row() -> str:
            facts = self.check()
            return f"libvirt {facts['libvirt_version']}, QEMU {facts['qemu_version']}"

        def kvm_row() -> str:
            verdict = kvm_usable()
            if verdict.usable:
                return f"KVM works ({verdict.reason})"
            raise BackendUnavailable(f"VMs will use TCG, software emulation ({verdict.reason})")

        return [DoctorCheck("libvirt (qemu:///system)", libvirt_row), DoctorCheck("KVM", kvm_row, optional=True)]

    def preflight(self, scenario: Scenario) -> None:
        check_memory(scenario, self.machine.memory_mib(scenario), self.side.name)

    def adopt(self, scenario: Scenario, artifact: Artifact, progress: Progress | None) -> None:
        self.preflight(scenario)
        artifact.facts.update(
            memory_mib=self.machine.memory_mib(scenario), vcpus=scenario.vm.vcpus, cpu=scenario.vm.cpu
        )

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[RunningVM]:
        target, workdir = self.new_target(scenario, run_id, index)
        try:
            spec = self.spec(target, scenario, artifact, workdir, index)
            domain = self._start(spec)
            target.mark("created")
            self.attach(target, domain, spec, artifact)
        except BaseException:  # KeyboardInterrupt too: leave no domain, overlay or work dir
            with contextlib.suppress(BackendError, BackendUnavailable):  # the first error is the one to report
                self._remove(target.name, workdir, target.handle)
            raise
        return target

    def new_target(self, scenario: Scenario, run_id: str, index: int) -> tuple[Target[RunningVM], Path]:
        name = f"explorer-{scenario.name}-{self.side.name}-{run_id}-{index}"
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{run_id}-{index}-{os.getpid()}-"))
        return Target(side=self.side.name, name=name, run_id=run_id, host_port=0), workdir

    def spec(
        self, target: Target[RunningVM], scenario: Scenario, artifact: Artifact, workdir: Path, index: int
    ) -> DomainSpec:
        """The domain of `target`: its files staged in `workdir` (an overlay on the artifact's
        disk), the machine's memory, ports and channels."""
        self.hypervisor.conn  # noqa: B018 - connect (or fail as unavailable) before staging files
        accel = "kvm" if artifact.accel and artifact.accel.kvm else "tcg"  # proven by prepare(), else TCG
        machine = self.machine
        return DomainSpec(
            target.name,
            target.run_id,
            index,
            scenario,
            accel,
            artifact.cmdline or "",
            workdir,
            **stage(workdir, artifact, self.hypervisor.qemu_ids),
            memory_mib=machine.memory_mib(scenario),
            agent=machine.agent,
            view_port=machine.view_port,
            extra_ports=dict.fromkeys(machine.extra_ports, 0),
        )

    def _start(self, spec: DomainSpec) -> Any:
        """createXML, again on another port should QEMU lose the race for the chosen one."""
        for attempt in range(PORT_TRIES):
            spec.host_port = free_port()
            spec.extra_ports = {guest_port: free_port() for guest_port in spec.extra_ports}
            try:
                return self.hypervisor.call(
                    f"starting {spec.name}", self.hypervisor.conn.createXML, domain_xml(spec), 0
                )
            except BackendError as exc:
                if "host forwarding" not in str(exc) or attempt == PORT_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def attach(self, target: Target[RunningVM], domain: Any, spec: DomainSpec, artifact: Artifact) -> None:
        """Watch a domain that now runs: its console, its QEMU, its view port."""
        vm = self.watch(target, domain, spec.workdir, spec.console, spec.host_port, spec.view_port)
        vm.workload_port = spec.scenario.workload.port
        vm.forwarded_ports = dict(spec.extra_ports)
        target.facts.update(  # the record (virsh dominfo and the domain XML say the same)
            domain=spec.name,
            uuid=domain.UUIDString(),
            memory_mib=spec.memory_mib,
            vcpus=spec.scenario.vm.vcpus,
            cpu=spec.scenario.vm.cpu,
            staged_by_copy=spec.staged_by_copy,
            forwarded_ports={str(g): h for g, h in spec.extra_ports.items()},
            # where the guest's files live, read from the domain XML made here (the I/O table)
            storage=disk_storage(domain_xml(spec), artifact.filesystem),
        )
        self.poll(target)

    def watch(
        self,
        target: Target[RunningVM],
        domain: Any,
        workdir: Path,
        console: Path,
        host_port: int,
        view_port: str | None,
    ) -> RunningVM:
        """Begin watching a running domain (booted here, or restored by another engine): its
        console, its QEMU process (the `process` milestone) and its view port, connected."""
        target.handle = vm = RunningVM(workdir, console)
        vm.domain = domain
        vm.start()
        target.host_port = host_port
        vm.process = qemu_process(domain.name())
        if vm.process is not None:
            target.mark("process")
        if view_port:
            vm.view = ViewChannel(channel_path(domain, view_port))
            vm.view.connect()
        return vm

    def poll(self, target: Target[RunningVM]) -> None:
        """Copy the console watcher's milestones and ask the machine's probes; raise if the
        guest failed or the VM died."""
        vm = target.held
        vm.read_new()
        for milestone, seen in self.machine.console_milestones.items():
            if seen in vm.seen:
                target.mark(milestone, vm.seen[seen])
        marks = vm.marks
        target.facts["guest_uptime_s"] = {k: float(v["uptime_s"]) for k, v in marks.items() if "uptime_s" in v}
        failed = next((m for m in FATAL_MARKS if m in marks), None)
        if failed:
            detail = " ".join(f"{k}={v}" for k, v in marks[failed].items() if k != "uptime_s")
            problem = f"the guest of {target.name} reported {failed} {detail}".rstrip()
        elif vm.process is not None and not vm.process.is_running():
            problem = f"the VM {target.name} stopped before it was ready"
        else:
            self._probe(target, vm)
            return
        cause = self.diagnosis(target)
        raise BackendError(f"{problem}: {cause}" if cause else problem, hint="its console's last lines:\n" + vm.tail())

    def _probe(self, target: Target[RunningVM], vm: RunningVM) -> None:
        for probe in self.machine.probes:
            if probe.milestone in target.marks:
                continue
            now = time.monotonic()
            if now - vm.probes.get(f"{probe.milestone}:at", -1e9) < probe.every_s:
                continue
            vm.probes[f"{probe.milestone}:at"] = now
            if probe.close not in vm.closers:
                vm.closers.append(probe.close)
            if probe.reached(target, vm.probes):
                target.mark(probe.milestone)
                probe.close(vm.probes)

    def after_ready(self, target: Target[RunningVM]) -> None:
        """Milestones that may come after the service answers (sshd, the agent): waited for, bounded."""
        deadline = time.monotonic() + self.machine.after_ready_s
        self.poll(target)
        while not set(self.machine.wait_after_ready) <= set(target.marks) and time.monotonic() < deadline:
            time.sleep(0.1)
            self.poll(target)

    def load_paths(self, target: Target[RunningVM]) -> list[NetPath]:
        """hostfwd on the host's 127.0.0.1; where the guest has an agent, the client inside it too."""
        paths = [hostfwd_path(target.host_port)]
        if self.machine.agent:
            paths.append(in_guest_path(target.name, target.held.workload_port))
        return paths

    def host_pids(self, target: Target[RunningVM]) -> list[int]:
        return []  # the workload runs on the guest's kernel: the host has no PID for it

    def runtime_pids(self, target: Target[RunningVM]) -> dict[int, str]:
        process = target.handle.process if target.handle is not None else None
        return {process.pid: "VMM"} if process is not None and process.is_running() else {}

    def logs(self, target: Target[RunningVM], lines: int = 20) -> str:
        return target.handle.tail(lines) if target.handle is not None else ""

    def diagnosis(self, target: Target[RunningVM]) -> str | None:
        """Out of memory, from the console (the kernel's own words) or from a silent console
        with little memory: a 64 MiB guest does not get as far as its console under TCG."""
        if target.handle is None:
            return None
        memory = target.facts.get("memory_mib")
        text = target.handle.text()
        said = next(
            (line.strip() for line in text.splitlines() if any(s.lower() in line.lower() for s in OOM_SIGNS)), None
        )
        if said:
            return (
                f"the VM likely ran out of memory with vm.memory_mib={memory} (its console: {said!r}); "
                "raise vm.memory_mib"
            )
        state = self.hypervisor.state(target.name)
        if not text.strip() and isinstance(memory, int) and memory < SMALL_VM_MIB:
            return (
                f"the VM likely ran out of memory: with vm.memory_mib={memory} its kernel never reached its "
                f"console (domain {state}); raise vm.memory_mib (to {SMALL_VM_MIB} or more)"
            )
        return f"the domain was {state}" if state != "running" else None

    def destroy(self, target: Target[RunningVM]) -> None:
        """Idempotent: a second call finds no domain and no work dir, and does nothing.

        The VMM is killed first and is dead (its memory freed) when this returns. libvirt's own
        removal then waits until the dead QEMU is reaped (by its nearest subreaper: tini where
        setup-host started libvirtd, else the host's init, which on some hosts reaps once a
        second), and takes ~0.2 s of its own after that; so it finishes in the background, and
        settle(), clean() and a second destroy() of the target wait for it. A run settles before
        each next start: a removal overlapping libvirt's next createXML delays it by ~0.2 s."""
        if target.handle is None:
            return
        if target.name in self._removing:
            self._wait_for_removals(target.name)
            return
        vm = target.held
        if not killed(vm.process):
            self._remove(target.name, vm.workdir, vm)
            return
        worker = threading.Thread(
            target=self._remove_in_background, args=(target.name, vm.workdir, vm), name=f"remove:{target.name}"
        )
        self._removing[target.name] = worker
        worker.start()

    def settle(self) -> None:
        self._wait_for_removals()

    def _remove_in_background(self, name: str, workdir: Path, vm: RunningVM) -> None:
        try:
            self._remove(name, workdir, vm)
        except (BackendError, BackendUnavailable) as exc:
            self._removal_errors.append(exc)

    def _wait_for_removals(self, name: str | None = None) -> None:
        """The background removal of `name` (of every target: None) finished; the first that
        failed is raised."""
        for key in [name] if name else list(self._removing):
            worker = self._removing.get(key)
            if worker is not None:
                worker.join()
                self._removing.pop(key, None)
        if self._removal_errors:
            raise self._removal_errors.pop(0)

    def _remove(self, name: str, workdir: Path, vm: RunningVM | None) -> None:
        if vm is not None:
            vm.stop()
        try:
            self.hypervisor.destroy_domain(name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # the overlay and console with it

    def clean(self, run_id: str | None = None) -> list[str]:
        """One run's domains and work dirs; or, without a run id, every leftover: what belongs
        to an explorer process that still runs (another terminal, a test) is not a leftover."""
        self._wait_for_removals()
        removed = []
        for domain in self.hypervisor.domains():
            label = self.hypervisor.labels(domain)
            if label is None:
                continue  # not labelled by explorer: never touch a user's own domain
            mine = label.get("run") == run_id if run_id else not owner_alive(label.get("pid", ""))
            if mine and self.hypervisor.destroy_domain(domain.name()):
                removed.append(f"domain {domain.name()}")
        return removed + clean_workdirs(WORKDIR_PREFIX, run_id)


def clean_workdirs(prefix: str, run_id: str | None) -> list[str]:
    """Work dirs named PREFIX-RUN-INDEX-PID-xxxx of one run, or of dead owners."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}{run_id + '-' if run_id else ''}*"):
        if run_id or not owner_alive(path.name.removeprefix(prefix).split("-")[2]):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"work dir {path}")
    return removed
