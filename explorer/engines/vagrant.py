"""Vagrant as an engine: the full-OS VM as a user brings it up, `vagrant up` with
vagrant-libvirt and the repository's own Vagrantfile, in a per-run VAGRANT_CWD, over
127.0.0.1 only.

Milestones are taken from the start of `vagrant up`: the VMM process, the kernel's banner on
the serial console, sshd's banner on the forwarded port, `vagrant up` returning, the service
ready from the host. Everything is labelled by name (the domain's prefix and the work dir
carry the run id and the owner's PID) and removed: `vagrant destroy -f`, then whatever it
left (domain, its volumes in explorer's storage pool), and the machine's `.vagrant` state with
the work dir. No libvirt network is ever created: the Vagrantfile turns the management
network off.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from explorer.cache import cache_dir
from explorer.contracts import DoctorCheck, EngineDefaults, Progress
from explorer.engines.domain import Hypervisor, check_memory, hostfwd_path, qemu_process
from explorer.engines.storage import disk_storage
from explorer.errors import BackendError, BackendUnavailable
from explorer.guest import ConsoleWatcher
from explorer.guest.forwards import Banner, Refusal
from explorer.guest.handles import VagrantMachine
from explorer.images import box as boxes
from explorer.model import Artifact, NetPath, Side, Target, free_port, owner_alive
from explorer.scenario import Scenario
from explorer.vagrant_cli import HINT, vagrant

VAGRANTFILE = Path(__file__).resolve().parent.parent.parent / "Vagrantfile"
WORKDIR_PREFIX = "explorer-vagrant-"  # explorer-vagrant-RUN-INDEX-PID-xxxx
DESTROY_TIMEOUT_S = 180
UP_TIMEOUT_S = 180  # how long after readiness `vagrant up` may take to return


class VagrantEngine(EngineDefaults[VagrantMachine]):
    name = "vagrant"
    milestones = ("created", "process", "kernel", "network", "ssh", "up", "ready")
    # sshd and `vagrant up` returning may come after readiness; sshd's banner is probed twice a
    # second, so it can be marked after `vagrant up` saw it: no order between those two
    order = (("created", "process", "kernel", "network", "ready"), ("kernel", "ssh"), ("kernel", "up"))
    ready_after = "network"  # the guest's network answers on eth1, the NIC with the forwards
    PROBES = (Refusal(), Banner())  # the network milestone, sshd's banner (guest/forwards.py)
    daemons = ("libvirtd", "virtlogd")

    def __init__(self, side: Side, min_memory_mib: int, hypervisor: Hypervisor | None = None) -> None:
        self.side, self.min_memory_mib = side, min_memory_mib
        self.hypervisor = hypervisor or Hypervisor()

    def memory_mib(self, scenario: Scenario) -> int:
        return max(scenario.vm.memory_mib, self.min_memory_mib)

    def preflight(self, scenario: Scenario) -> None:
        check_memory(scenario, self.memory_mib(scenario), self.side.name)

    def check(self) -> dict[str, Any]:
        facts = self.hypervisor.check()
        if not VAGRANTFILE.is_file():
            raise BackendUnavailable(f"the repository's Vagrantfile is missing ({VAGRANTFILE})")
        try:
            version = vagrant(["--version"], Path.cwd(), timeout=60).stdout.split()[-1]
            plugins = vagrant(["plugin", "list"], Path.cwd(), timeout=60).stdout
        except (OSError, BackendError) as exc:
            raise BackendUnavailable(f"vagrant is not usable: {exc}", hint=HINT) from None
        match = re.search(r"vagrant-libvirt \(([^,)]+)", plugins)
        if match is None:
            raise BackendUnavailable("vagrant has no vagrant-libvirt plugin", hint=HINT)
        return {**facts, "vagrant_version": version, "vagrant_libvirt_version": match[1]}

    def doctor_checks(self) -> list[DoctorCheck]:
        def row() -> str:
            facts = self.check()
            return f"Vagrant {facts['vagrant_version']}, vagrant-libvirt {facts['vagrant_libvirt_version']}"

        return [DoctorCheck("Vagrant (vagrant-libvirt)", row)]

    def adopt(self, scenario: Scenario, artifact: Artifact, progress: Progress | None) -> None:
        """The box added to Vagrant (replacing an older one of the scenario, and its uploaded
        volume), and explorer's storage pool, where vagrant-libvirt uploads it."""
        self.preflight(scenario)
        name = artifact.box
        if name is None:
            raise BackendError(f"{artifact.ref} was prepared without a Vagrant box")
        known = explorer_boxes()
        if name not in known:
            if progress:
                progress(f"adding the box {name} to Vagrant")
            boxes.add_box(artifact.paths["box"], name)
        self._ensure_pool(boxes.STORAGE_POOL)
        for old in known:
            if old != name and old.startswith(f"explorer/{scenario.name}-"):
                self._remove_box(old)
        artifact.facts.update(
            storage_pool=boxes.STORAGE_POOL,
            memory_mib=self.memory_mib(scenario),
            vcpus=scenario.vm.vcpus,
            cpu=scenario.vm.cpu,
        )

    def _ensure_pool(self, name: str) -> None:
        """explorer's own directory pool, in a directory QEMU's user can reach (not under
        root's 0700 home); redefined if an older explorer made it elsewhere."""
        path, call, conn = pool_dir(), self.hypervisor.call, self.hypervisor.conn
        pool = self.hypervisor.pool(name)
        if pool is not None and f"<path>{path}</path>" not in pool.XMLDesc(0):
            if pool.isActive():
                call(f"stopping the storage pool {name}", pool.destroy)
            call(f"undefining the storage pool {name}", pool.undefine)
            pool = None
        if pool is None:
            xml = f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
            pool = call(f"defining the storage pool {name}", conn.storagePoolDefineXML, xml, 0)
        if not pool.isActive():
            call(f"starting the storage pool {name}", pool.create, 0)

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[VagrantMachine]:
        prefix = f"explorer-{scenario.name}-{self.side.name}-{run_id}-{index}-{os.getpid()}-"
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{run_id}-{index}-{os.getpid()}-"))
        shutil.copyfile(VAGRANTFILE, workdir / "Vagrantfile")
        workdir.chmod(0o711)  # QEMU's user writes the console file in it (libvirt labels the file)
        console = workdir / "console.log"
        ssh_port, host_port, probe_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "VAGRANT_CWD": str(workdir),
            "EXPLORER_SCENARIO": scenario.name,
            "EXPLORER_SSH_PORT": str(ssh_port),
            "EXPLORER_HOST_PORT": str(host_port),
            "EXPLORER_PROBE_PORT": str(probe_port),
            "EXPLORER_DOMAIN_PREFIX": prefix,
            "EXPLORER_LIBVIRT_DRIVER": _driver(artifact),
            "EXPLORER_MEMORY_MIB": str(self.memory_mib(scenario)),
            "EXPLORER_CONSOLE": str(console),
        }
        target: Target[VagrantMachine] = Target(
            side=self.side.name, name=prefix + "default", run_id=run_id, host_port=host_port
        )
        with (workdir / "vagrant-up.log").open("wb") as log:
            up = subprocess.Popen(
                ["vagrant", "up", "--provider=libvirt"],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        target.mark("created")
        target.handle = machine = VagrantMachine(workdir, env, up, ConsoleWatcher(console))
        machine.forwarded_ports = {22: ssh_port, 9: probe_port}
        machine.watcher.start()
        target.facts.update(  # the record
            domain=target.name,
            box=artifact.box,
            memory_mib=self.memory_mib(scenario),
            vcpus=scenario.vm.vcpus,
            forwarded_ports={"22": ssh_port, "9": probe_port},
            guest_filesystem=artifact.filesystem,
        )
        return target

    def poll(self, target: Target[VagrantMachine]) -> None:
        machine = target.held
        machine.watcher.read_new()
        if "kernel" in machine.watcher.seen:
            target.mark("kernel", machine.watcher.seen["kernel"])
        if machine.process is None:
            machine.process = qemu_process(target.name)
            if machine.process is not None:
                target.mark("process")
                target.facts["storage"] = self._storage(target)
                machine.domain = self.hypervisor.domain(target.name)  # its agent: the inside probe's way in
        for probe in self.PROBES:
            if probe.milestone not in target.marks and probe.reached(target, machine.probes):
                target.mark(probe.milestone)
                probe.close(machine.probes)
        code = machine.up.poll()
        if code is not None and machine.up_returned is not None and "up" not in target.marks:
            if code != 0:
                raise BackendError(
                    f"vagrant up exited {code} for {target.name}", hint="its last lines:\n" + self.logs(target)
                )
            target.mark("up", machine.up_returned)

    def _storage(self, target: Target[VagrantMachine]) -> dict[str, Any]:
        """Where the guest's files live, read from the domain XML vagrant-libvirt made (the I/O
        table's storage path); its QEMU runs, so the domain is defined."""
        try:
            domain = self.hypervisor.domain(target.name)
            xml = self.hypervisor.call(f"reading the domain XML of {target.name}", domain.XMLDesc, 0)
        except BackendError as exc:  # said, not guessed: the table shows why
            return {"path": f"not read: {exc}", "cache_mode": None}
        return disk_storage(xml, target.facts.get("guest_filesystem"))

    def after_ready(self, target: Target[VagrantMachine]) -> None:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while "up" not in target.marks and time.monotonic() < deadline:
            self.poll(target)
            time.sleep(0.1)

    def load_paths(self, target: Target[VagrantMachine]) -> list[NetPath]:
        return [hostfwd_path(target.host_port)]

    def host_pids(self, target: Target[VagrantMachine]) -> list[int]:
        return []  # the workload runs on the guest's kernel

    def runtime_pids(self, target: Target[VagrantMachine]) -> dict[int, str]:
        process = target.handle.process if target.handle is not None else None
        return {process.pid: "VMM"} if process is not None and process.is_running() else {}

    def logs(self, target: Target[VagrantMachine], lines: int = 20) -> str:
        if target.handle is None:
            return ""
        with contextlib.suppress(OSError):
            text = (target.handle.workdir / "vagrant-up.log").read_text(errors="replace")
            # a Ruby backtrace says least at its end: keep what came before its frames
            kept = [line for line in text.rstrip().splitlines() if not line.startswith("\tfrom ")]
            return "\n".join(kept[-lines:])
        return ""

    def diagnosis(self, target: Target[VagrantMachine]) -> str | None:
        """What the console says of memory, or the domain's state once it stopped."""
        if target.handle is None:
            return None
        state = self.hypervisor.state(target.name)
        return f"the domain was {state}" if state not in ("running", "gone") else None

    def destroy(self, target: Target[VagrantMachine]) -> None:
        if target.handle is not None:
            target.handle.watcher.stop()
            for probe in self.PROBES:
                probe.close(target.handle.probes)
            self._remove_machine(target.handle.workdir, target.handle.env, target.handle.up, target.name)

    def _remove_machine(self, workdir: Path, env: dict[str, str] | None, up: Any, domain: str | None) -> None:
        """vagrant destroy -f, then whatever it left: the domain, its volumes, the work dir."""
        if up is not None and up.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                up.wait(timeout=30)
        try:
            if (workdir / "Vagrantfile").is_file():
                with contextlib.suppress(BackendError, OSError):
                    vagrant(["destroy", "-f"], workdir, env=env, timeout=DESTROY_TIMEOUT_S)
            for name in [domain] if domain else self._domains_in(workdir):
                self.hypervisor.destroy_domain(name)
                self.hypervisor.delete_volumes(boxes.STORAGE_POOL, name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _domains_in(self, workdir: Path) -> list[str]:
        """The domain names a work dir's machine has (from its name: RUN-INDEX-PID)."""
        run, index, pid = workdir_labels(workdir)
        return [
            d.name()
            for d in self.hypervisor.domains()
            if re.fullmatch(rf"explorer-.+-{run}-{index}-{pid}-default", d.name())
        ]

    def _remove_box(self, name: str) -> list[str]:
        """A box of explorer's and the base volume vagrant-libvirt uploaded from it."""
        removed = []
        with contextlib.suppress(BackendError):
            vagrant(["box", "remove", "--force", "--all", name], Path.cwd(), timeout=120)
            removed.append(f"vagrant box {name}")
        prefix = name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
        return removed + [f"base volume {v}" for v in self.hypervisor.delete_volumes(boxes.STORAGE_POOL, prefix)]

    def remove_cached(self) -> list[str]:
        """`explorer clean --cache`: every explorer box, its uploaded volume, and the pool;
        none while a live run's machine may be using them."""
        live = [d for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*") if owner_alive(workdir_labels(d)[2])]
        if live:
            return []  # removed nothing: what clean prints is what it removed
        removed = [line for name in explorer_boxes() for line in self._remove_box(name)]
        pool = self.hypervisor.pool(boxes.STORAGE_POOL)
        if pool is not None and not pool.listAllVolumes(0):
            with contextlib.suppress(BackendError):
                if pool.isActive():
                    self.hypervisor.call("stopping the storage pool", pool.destroy)
                self.hypervisor.call("undefining the storage pool", pool.undefine)
                removed.append(f"storage pool {boxes.STORAGE_POOL}")
        return removed

    def clean(self, run_id: str | None = None) -> list[str]:
        """The machines of one run, or of every explorer process that no longer runs."""
        removed = []
        for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{run_id + '-' if run_id else ''}*"):
            if run_id or not owner_alive(workdir_labels(workdir)[2]):
                self._remove_machine(workdir, {**os.environ, "VAGRANT_CWD": str(workdir)}, None, None)
                removed.append(f"vagrant machine {workdir}")
        for domain in self.hypervisor.domains():
            match = re.fullmatch(rf"explorer-.+-{self.side.name}-([0-9a-f]+)-\d+-(\d+)-default", domain.name())
            if match and (match[1] == run_id if run_id else not owner_alive(match[2])):
                if self.hypervisor.destroy_domain(domain.name()):
                    removed.append(f"domain {domain.name()}")
                self.hypervisor.delete_volumes(boxes.STORAGE_POOL, domain.name())
        return removed


def pool_dir() -> Path:
    """/var/lib/explorer/vagrant-pool as root (QEMU runs as libvirt-qemu, which cannot enter
    root's home), else under the cache."""
    if os.geteuid() != 0:
        return cache_dir("vagrant-pool")
    path = Path("/var/lib/explorer/vagrant-pool")
    path.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)
    path.chmod(0o711)
    return path


def workdir_labels(workdir: Path) -> tuple[str, str, str]:
    """(run id, index, owner PID) from a work dir's name: explorer-vagrant-RUN-INDEX-PID-xxxx."""
    run, index, pid = workdir.name.removeprefix(WORKDIR_PREFIX).split("-")[:3]
    return run, index, pid


def explorer_boxes() -> list[str]:
    """Names of the boxes explorer added (`vagrant box list`: NAME (PROVIDER, VERSION))."""
    try:
        out = vagrant(["box", "list"], Path.cwd(), timeout=120).stdout
    except BackendError:
        return []
    return [line.split()[0] for line in out.splitlines() if line.startswith("explorer/")]


def _driver(artifact: Artifact) -> str:
    return "kvm" if artifact.accel and artifact.accel.kvm else "qemu"
