"""The VM side: libvirt (qemu:///system) runs a transient QEMU domain that boots the scenario's VM image;
the host reaches the guest only through QEMU's user-mode hostfwd on 127.0.0.1. The VMM is all the host
sees of the workload: milestones come from the VMM process and the guest's serial console (a file)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

import psutil

from explorer import guest
from explorer.backends.base import Artifact, Backend, GuestView, Target, owner_alive
from explorer.errors import BackendError, BackendUnavailable, UsageError
from explorer.kvm import device_usable_by, kvm_usable
from explorer.scenario import Scenario

if TYPE_CHECKING:
    from explorer.sides import Side

URI = "qemu:///system"
START_HINT = "run scripts/setup-host (it starts virtlogd and libvirtd)"
NS = "https://explorer.invalid/libvirt/1"  # the <metadata> namespace that labels our domains
WORKDIR_PREFIX = "explorer-vm-"
# Guest init marks after which the workload will never answer: fail now, not at the deadline.
FATAL_MARKS = ("initramfs-error", "config-error", "workdir-error", "net-error", "workload-exited")
VIEW_WAIT_S = 15.0
OOM_SIGNS = re.compile(r"Out of memory|oom-kill|Initramfs unpacking failed|not enough memory|"
                       r"System is deadlocked on memory", re.IGNORECASE)
SMALL_VM_MIB = 128  # measured under TCG: 128 MiB boots redis, 64 MiB prints nothing at all
PORT_TRIES = 3
KILL_WAIT_S = 5.0


def _libvirt() -> Any:
    """libvirt-python, imported on first use, its own stderr printing silenced."""
    try:
        import libvirt
    except ImportError as exc:
        raise BackendUnavailable("libvirt-python is not installed", hint="pip install libvirt-python") from exc
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


class RunningVM(guest.ConsoleWatcher):
    """A Target's handle: the console watcher, and what is needed to remove everything made
    for the VM."""

    def __init__(self, workdir: Path, console: Path) -> None:
        super().__init__(console)
        self.workdir = workdir
        self.process: psutil.Process | None = None
        self.view: guest.ViewChannel | None = None  # the microVM's view port, where it has one

    def stop(self) -> None:
        if self.view is not None:
            self.view.close()
        super().stop()


class LibvirtBackend(Backend):
    NAME = "libvirt"
    MILESTONES = ("created", "process", "kernel", "init", "network", "ready")
    READY_AFTER = "network"

    def __init__(self, side: Side | None = None) -> None:
        from explorer.sides import SIDES

        super().__init__(side or SIDES["microvm"])
        self._conn: Any = None
        self._removing: dict[str, threading.Thread] = {}  # libvirt's bookkeeping of killed VMs (destroy)
        self._removal_errors: list[BackendError | BackendUnavailable] = []

    @property
    def conn(self) -> Any:
        if self._conn is None:
            libvirt = _libvirt()
            try:
                self._conn = libvirt.open(URI)
            except libvirt.libvirtError as exc:
                raise BackendUnavailable(f"libvirtd is not answering on {URI}: {exc}", hint=START_HINT) from exc
        return self._conn

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        """A libvirt call, its error wrapped once, here at the boundary."""
        libvirt = _libvirt()
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_CONNECT or exc.get_error_domain() == libvirt.VIR_FROM_RPC:
                raise BackendUnavailable(f"libvirtd stopped answering while {what}: {exc}", hint=START_HINT) from exc
            raise BackendError(f"libvirt failed while {what}: {exc}") from exc

    @functools.cached_property
    def qemu_ids(self) -> tuple[int, int] | None:
        """The uid:gid libvirt runs QEMU as (its DAC base label, e.g. +64055:+108), if it says;
        read once per backend (a capabilities call can make libvirt re-probe QEMU)."""
        caps = ET.fromstring(self._call("reading the capabilities", self.conn.getCapabilities))
        labels = (label.text or "" for label in caps.iterfind("host/secmodel/baselabel[@type='qemu']"))
        match = next(filter(None, (re.fullmatch(r"\+?(\d+):\+?(\d+)", text.strip()) for text in labels)), None)
        return (int(match[1]), int(match[2])) if match else None

    def check(self) -> dict[str, Any]:
        versions = [self._call("asking versions", fn) for fn in (self.conn.getLibVersion, self.conn.getVersion)]
        lib, qemu = (f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}" for v in versions)
        ids = self.qemu_ids
        facts = {"hypervisor": "qemu", "libvirt_version": lib, "qemu_version": qemu}
        if ids and not device_usable_by(*ids):  # libvirt then re-probes QEMU ~12x per start (~1 min here)
            facts["warning"] = (f"/dev/kvm is not read-write for QEMU's user {ids[0]}:{ids[1]}, so libvirt "
                                "re-probes QEMU at every VM start; fix: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm")
        return facts

    def preflight(self, scenario: Scenario) -> None:
        self.check_memory(scenario, scenario.vm.memory_mib)

    def prepare(self, scenario: Scenario, progress: Any = None) -> Artifact:
        """The container image first (the VM disk is made from it), then the VM image."""
        self.preflight(scenario)
        from explorer.backends.docker import DockerBackend
        from explorer.images.vm_image import ensure_vm_image

        docker_side = DockerBackend()
        image = ensure_vm_image(docker_side.client, scenario, docker_side.prepare(scenario, progress), progress)
        verdict = kvm_usable(kernel=image.kernel)  # here, so that a first boot test is not timed as startup
        facts = {**image.facts, "kernel_version": image.kernel_version, "cmdline": image.cmdline,
                 "memory_mib": scenario.vm.memory_mib, "vcpus": scenario.vm.vcpus, "cpu": scenario.vm.cpu,
                 "accel": "kvm" if verdict.usable else "tcg", "accel_reason": verdict.reason}
        paths = {"disk": str(image.disk), "kernel": str(image.kernel), "initramfs": str(image.initramfs)}
        return Artifact(ref=str(image.disk), facts=facts, paths=paths)

    def check_memory(self, scenario: Scenario, memory_mib: int) -> None:
        available = psutil.virtual_memory().available // 2**20
        if memory_mib > available:
            raise UsageError(f"vm.memory_mib: scenario {scenario.name} asks for a {memory_mib} MiB VM "
                             f"({self.side.name}), but this host has only {available} MiB available",
                             hint="lower vm.memory_mib in the scenario")

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target:
        name = f"explorer-{scenario.name}-{self.side.name}-{run_id}-{index}"
        target = Target(side=self.side.name, name=name, run_id=run_id, host_port=0)
        conn = self.conn
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{run_id}-{index}-{os.getpid()}-"))
        try:
            accel = "kvm" if artifact.facts.get("accel") == "kvm" else "tcg"  # proven by prepare(), else TCG
            spec = DomainSpec(name, run_id, index, scenario, accel, str(artifact.facts.get("cmdline", "")), workdir,
                              **_stage(workdir, artifact, self.qemu_ids), **self.domain_options(scenario))
            domain = self._start(conn, spec)
            target.mark("created")
            target.handle = vm = RunningVM(workdir, spec.console)
            vm.start()
            target.host_port = spec.host_port
            target.facts.update(domain=name, uuid=domain.UUIDString(), accel=accel,
                                accel_reason=artifact.facts.get("accel_reason"), memory_mib=spec.memory_mib,
                                vcpus=scenario.vm.vcpus, cpu=scenario.vm.cpu, host_port=spec.host_port,
                                console=str(spec.console), staged_by_copy=spec.staged_by_copy,
                                forwarded_ports={str(g): h for g, h in spec.extra_ports.items()})
            vm.process = _qemu_process(name)
            if vm.process is not None:
                target.mark("process")
                target.facts["qemu_pid"] = vm.process.pid
            if spec.view_port:
                vm.view = guest.ViewChannel(_channel_path(domain, guest.VIEW_PORT))
                vm.view.connect()
            self.poll(target)
        except BaseException:  # KeyboardInterrupt too: leave no domain, overlay or work dir
            with contextlib.suppress(BackendError, BackendUnavailable):  # the first error is the one to report
                self._remove(name, workdir, target.handle)
            raise
        return target

    def domain_options(self, scenario: Scenario) -> dict[str, Any]:
        """What a VM side sets in its domain beyond the defaults (memory, forwarded guest
        ports besides the workload's, a guest-agent channel)."""
        return {"memory_mib": scenario.vm.memory_mib, "view_port": True}

    def _start(self, conn: Any, spec: DomainSpec) -> Any:
        """createXML, again on another port should QEMU lose the race for the chosen one."""
        from explorer.images.qemu_floor import free_port

        for attempt in range(PORT_TRIES):
            spec.host_port = free_port()
            spec.extra_ports = {guest_port: free_port() for guest_port in spec.extra_ports}
            try:
                return self._call(f"starting {spec.name}", conn.createXML, domain_xml(spec), 0)
            except BackendError as exc:
                if "host forwarding" not in str(exc) or attempt == PORT_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def poll(self, target: Target) -> None:
        """Copy the console watcher's milestones; raise if the guest failed or the VM died."""
        vm: RunningVM = target.handle
        vm.read_new()
        for milestone in ("kernel", "init", "network"):
            if milestone in vm.seen:
                target.mark(milestone, vm.seen[milestone])
        marks = vm.marks
        target.facts["guest_uptime_s"] = {k: float(v["uptime_s"]) for k, v in marks.items() if "uptime_s" in v}
        failed = next((m for m in FATAL_MARKS if m in marks), None)
        if failed:
            detail = " ".join(f"{k}={v}" for k, v in marks[failed].items() if k != "uptime_s")
            problem = f"the guest of {target.name} reported {failed} {detail}".rstrip()
        elif vm.process is not None and not vm.process.is_running():
            problem = f"the VM {target.name} stopped before it was ready"
        else:
            return
        cause = self.diagnosis(target)
        raise BackendError(f"{problem}: {cause}" if cause else problem, hint="its console's last lines:\n" + vm.tail())

    def host_pids(self, target: Target) -> list[int]:
        return []  # the workload runs on the guest's kernel: the host has no PID for it

    def runtime_pids(self, target: Target) -> dict[int, str]:
        process = target.handle.process if target.handle is not None else None
        return {process.pid: "VMM"} if process is not None and process.is_running() else {}

    def guest_view(self, target: Target) -> GuestView:
        """A view the guest's init takes when asked on its view port: after readiness, as
        docker exec's is."""
        vm: RunningVM = target.handle
        if vm.view is None:
            raise BackendError(f"{target.name} has no guest view port")
        try:
            return vm.view.request(VIEW_WAIT_S)
        except BackendError as exc:
            raise BackendError(f"{target.name}: {exc}", hint="its console's last lines:\n" + self.logs(target)) from exc

    def logs(self, target: Target, lines: int = 20) -> str:
        return target.handle.tail(lines) if target.handle is not None else ""

    def diagnosis(self, target: Target) -> str | None:
        """Out of memory, from the console (the kernel's own words) or from a silent console
        with little memory: a 64 MiB guest does not get as far as its console under TCG."""
        if target.handle is None:
            return None
        memory = target.facts.get("memory_mib")
        text = target.handle.text()
        said = next((line.strip() for line in text.splitlines() if OOM_SIGNS.search(line)), None)
        if said:
            return (f"the VM likely ran out of memory with vm.memory_mib={memory} (its console: {said!r}); "
                    "raise vm.memory_mib")
        state = self._state(target.name)
        if not text.strip() and isinstance(memory, int) and memory < SMALL_VM_MIB:
            return (f"the VM likely ran out of memory: with vm.memory_mib={memory} its kernel never reached its "
                    f"console (domain {state}); raise vm.memory_mib (to {SMALL_VM_MIB} or more)")
        return f"the domain was {state}" if state != "running" else None

    def _state(self, name: str) -> str:
        libvirt = _libvirt()
        names = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
                 libvirt.VIR_DOMAIN_SHUTOFF: "shut off", libvirt.VIR_DOMAIN_CRASHED: "crashed"}
        try:
            state, _reason = self.conn.lookupByName(name).state()
        except (libvirt.libvirtError, BackendUnavailable):
            return "gone"
        return names.get(state, f"in state {state}")

    def destroy(self, target: Target) -> None:
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
        vm: RunningVM = target.handle
        if not _killed(vm.process):
            self._remove(target.name, vm.workdir, vm)
            return
        worker = threading.Thread(target=self._remove_in_background, args=(target.name, vm.workdir, vm),
                                  name=f"remove:{target.name}")
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
            self._destroy_domain(name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # the overlay and console with it

    def _destroy_domain(self, name: str) -> bool:
        """Destroy `name` (undefine it too, had someone made it persistent); False if absent."""
        libvirt = _libvirt()
        try:
            domain = self.conn.lookupByName(name)
            persistent = domain.isPersistent()
            domain.destroy()  # SIGTERM, then SIGKILL; returns once QEMU is gone (and a transient domain)
            if persistent:
                domain.undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # not running: fine
                raise BackendError(f"libvirt could not remove {name}: {exc}") from exc
        return True

    def clean(self, run_id: str | None = None) -> list[str]:
        """One run's domains and work dirs; or, without a run id, every leftover: what belongs
        to an explorer process that still runs (another terminal, a test) is not a leftover."""
        self._wait_for_removals()
        removed, libvirt = [], _libvirt()
        for domain in self._call("listing domains", self.conn.listAllDomains, 0):
            try:
                label = ET.fromstring(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS)).attrib
            except (libvirt.libvirtError, ET.ParseError):
                continue  # not labelled by explorer: never touch a user's own domain
            mine = label.get("run") == run_id if run_id else not owner_alive(label.get("pid", ""))
            if mine and self._destroy_domain(domain.name()):
                removed.append(f"domain {domain.name()}")
        for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{run_id + '-' if run_id else ''}*"):
            if run_id or not owner_alive(path.name.split("-")[4]):  # explorer-vm-RUN-INDEX-PID-xxxx
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"work dir {path}")
        return removed


@dataclass
class DomainSpec:
    """What one domain's XML says, and where its files are on the host."""

    name: str
    run_id: str
    index: int
    scenario: Scenario
    accel: str
    cmdline: str
    workdir: Path
    overlay: Path
    kernel: Path
    initramfs: Path
    staged_by_copy: list[str]
    memory_mib: int = 512
    extra_ports: dict[int, int] = field(default_factory=dict)  # guest port -> host port, besides the workload's
    agent: bool = False  # a virtio-serial channel for qemu-guest-agent
    view_port: bool = False  # a virtio-serial channel for explorer's init to answer view requests on
    host_port: int = 0

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"


def domain_xml(spec: DomainSpec) -> str:
    """A transient domain: direct kernel boot, virtio disk (an overlay), serial console to a
    file, user-mode NIC forwarding 127.0.0.1:host_port only, labelled with the run."""
    q, vm = quoteattr, spec.scenario.vm
    cpu = "<cpu mode='maximum' check='none'/>" if vm.cpu == "maximum" else ""
    forwards = {spec.scenario.workload.port: spec.host_port, **spec.extra_ports}
    netdev = "user,id=explorer0," + ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in forwards.items())
    channels = [name for name, wanted in (("org.qemu.guest_agent.0", spec.agent), (guest.VIEW_PORT, spec.view_port))
                if wanted]  # libvirt makes each one's socket (under its own channel directory)
    channel_xml = "".join(f"\n    <channel type='unix'><target type='virtio' name={q(name)}/></channel>"
                          for name in channels)
    labels = {"run": spec.run_id, "scenario": spec.scenario.name, "index": spec.index, "pid": os.getpid(),
              "workdir": spec.workdir}  # pid: `explorer clean` spares the domains of a run in progress
    label = " ".join(f"{key}={q(str(value))}" for key, value in labels.items())
    kind = "kvm" if spec.accel == "kvm" else "qemu"
    tcg = f"<tcg><tb-cache unit='MiB'>{vm.tb_cache_mib}</tb-cache></tcg>" if vm.tb_cache_mib and kind == "qemu" else ""
    return f"""<domain type={q(kind)} xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{escape(spec.name)}</name>
  <metadata><explorer:target xmlns:explorer={q(NS)} {label}/></metadata>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>{vm.vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{escape(str(spec.kernel))}</kernel>
    <initrd>{escape(str(spec.initramfs))}</initrd><cmdline>{escape(spec.cmdline)}</cmdline></os>
  <features><acpi/>{tcg}</features>{cpu}
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file={q(str(spec.overlay))}/>
      <target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path={q(str(spec.console))}/><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <controller type='usb' model='none'/><memballoon model='none'/>{channel_xml}
  </devices>
  <seclabel type='none' model='dac'/>
  <qemu:commandline><qemu:arg value='-netdev'/><qemu:arg value={q(netdev)}/>
    <qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=explorer0,addr=0x1e,romfile='/></qemu:commandline>
</domain>"""


def _stage(workdir: Path, artifact: Artifact, ids: tuple[int, int] | None) -> dict[str, Any]:
    """The run's files, usable by QEMU's user without relabelling the shared cache (no
    dynamic ownership): the overlay is QEMU's own; cached files it cannot reach are
    hard-linked into the 0711 work dir (copied where a link cannot be made)."""
    from explorer.images.vm_image import make_overlay

    workdir.chmod(0o711)
    staged: list[str] = []
    keys = ("disk", "kernel", "initramfs")
    paths = {key: _reachable(Path(artifact.paths[key]), workdir, ids, staged) for key in keys}
    overlay = workdir / "overlay.qcow2"
    make_overlay(paths["disk"], overlay)
    if ids is not None and os.geteuid() == 0:
        os.chown(overlay, *ids)
    else:  # not root: in a 0711 directory, nobody else can list the file to find it
        overlay.chmod(0o666)
    return {"overlay": overlay, "kernel": paths["kernel"], "initramfs": paths["initramfs"], "staged_by_copy": staged}


def _reachable(path: Path, workdir: Path, ids: tuple[int, int] | None, staged: list[str]) -> Path:
    """`path` itself if any user can read it (QEMU's user is neither root nor in root's
    group), else a hard link to it in the work dir, else a copy."""
    if not path.is_file():
        raise BackendError(f"the VM image file {path} is missing", hint="run `explorer build` again")
    resolved = path.resolve()
    by_others = all(p.stat().st_mode & 0o1 for p in resolved.parents) and resolved.stat().st_mode & 0o4
    if ids is None or ids[0] == 0 or by_others:
        return path
    link = workdir / f"{path.stem}.shared{path.suffix}"
    try:
        if not resolved.stat().st_mode & 0o004:
            raise PermissionError("a link would be as unreadable as its source")
        os.link(resolved, link)
    except OSError:  # another filesystem, or unreadable by others: copy
        shutil.copyfile(resolved, link)
        link.chmod(0o644)
        staged.append(str(path))
    return link


def _channel_path(domain: Any, name: str) -> Path:
    """The host socket libvirt made for the domain's virtio-serial channel `name`."""
    for channel in ET.fromstring(domain.XMLDesc(0)).iter("channel"):
        target, source = channel.find("target"), channel.find("source")
        if target is not None and target.get("name") == name and source is not None and source.get("path"):
            return Path(source.get("path", ""))
    raise BackendError(f"libvirt made no socket for the domain's channel {name}")


def _killed(process: psutil.Process | None) -> bool:
    """SIGKILL the VMM and wait until it is dead (a zombie, or gone): the guest is discarded
    anyway. False where there is no process to kill or it did not die in time."""
    if process is None:
        return False
    deadline = time.monotonic() + KILL_WAIT_S
    try:
        process.kill()
        while process.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    return True


def _qemu_process(name: str) -> psutil.Process | None:
    """The domain's QEMU, from the pid file libvirt's QEMU driver writes for every domain."""
    try:
        return psutil.Process(int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()))
    except (OSError, ValueError, psutil.Error):
        return None
