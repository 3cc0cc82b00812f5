"""The vagrant side: the full-OS VM as a user brings it up, `vagrant up` with vagrant-libvirt
and the repository's own Vagrantfile, in a per-run VAGRANT_CWD, over 127.0.0.1 only.

Milestones are taken from the start of `vagrant up`: the VMM process, sshd's banner on the
forwarded port, `vagrant up` returning, the service ready from the host. The guest view comes
over `vagrant ssh`. Everything is labelled by name (the domain's prefix and the work dir carry
the run id and the owner's PID) and removed: `vagrant destroy -f`, then whatever it left
(domain, its volume in explorer's storage pool), and the machine's `.vagrant` state with the
work dir. No libvirt network is ever created: the Vagrantfile turns the management network off.
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

from explorer import guest
from explorer.backends.base import Artifact, GuestView, Target, owner_alive
from explorer.backends.fullvm import PROBE_EVERY_S, FullVMBackend, _ssh_banner
from explorer.backends.libvirt import _qemu_process
from explorer.errors import BackendError, BackendUnavailable
from explorer.images import cache_dir
from explorer.scenario import Scenario

VAGRANTFILE = Path(__file__).resolve().parent.parent.parent / "Vagrantfile"
WORKDIR_PREFIX = "explorer-vagrant-"  # explorer-vagrant-RUN-INDEX-PID-xxxx
HINT = "run scripts/setup-host (it installs vagrant and vagrant-libvirt)"
DESTROY_TIMEOUT_S = 180
UP_TIMEOUT_S = 180  # how long after readiness `vagrant up` may take to return


class VagrantBackend(FullVMBackend):
    NAME = "vagrant"
    MILESTONES = ("created", "process", "kernel", "ssh", "up", "ready")

    def check(self) -> dict[str, Any]:
        facts = super().check()
        if not VAGRANTFILE.is_file():
            raise BackendUnavailable(f"the repository's Vagrantfile is missing ({VAGRANTFILE})")
        try:
            version = _vagrant(["--version"], Path.cwd(), timeout=60).stdout.split()[-1]
            plugins = _vagrant(["plugin", "list"], Path.cwd(), timeout=60).stdout
        except (OSError, BackendError) as exc:
            raise BackendUnavailable(f"vagrant is not usable: {exc}", hint=HINT) from None
        match = re.search(r"vagrant-libvirt \(([^,)]+)", plugins)
        if match is None:
            raise BackendUnavailable("vagrant has no vagrant-libvirt plugin", hint=HINT)
        return {**facts, "vagrant_version": version, "vagrant_libvirt_version": match[1]}

    def prepare(self, scenario: Scenario, progress: Any = None) -> Artifact:
        from explorer.images import vagrant_box
        from explorer.images.fullos import ensure_fullos_image

        artifact = super().prepare(scenario, progress)  # the full-OS image, the KVM verdict
        image = ensure_fullos_image(scenario)  # cached: the image prepare() just found
        box = vagrant_box.ensure_box(scenario, image, progress, driver="kvm" if artifact.facts["accel"] == "kvm"
                                     else "qemu")
        boxes = _explorer_boxes()
        if box.name not in boxes:
            if progress:
                progress(f"adding the box {box.name} to Vagrant")
            vagrant_box.add_box(box)
        self._ensure_pool(vagrant_box.STORAGE_POOL)
        for old in boxes:  # an older image of this scenario: its box and uploaded volume go
            if old != box.name and old.startswith(f"explorer/{scenario.name}-"):
                self._remove_box(old)
        artifact.facts.update(box=box.name, box_bytes=box.facts["box_bytes"], storage_pool=vagrant_box.STORAGE_POOL)
        artifact.paths["box"] = str(box.path)
        return artifact

    def _ensure_pool(self, name: str) -> None:
        """explorer's own directory pool, where vagrant-libvirt uploads the box and makes
        overlays: in a directory QEMU's user can reach (not under root's 0700 home)."""
        libvirt = _libvirt_module()
        path = pool_dir()
        try:
            pool = self.conn.storagePoolLookupByName(name)
            if f"<path>{path}</path>" not in pool.XMLDesc(0):  # made elsewhere by an older explorer
                with contextlib.suppress(libvirt.libvirtError):
                    pool.destroy()
                pool.undefine()
                raise libvirt.libvirtError("redefine")
        except libvirt.libvirtError:
            xml = f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
            pool = self._call(f"defining the storage pool {name}", self.conn.storagePoolDefineXML, xml, 0)
        if not pool.isActive():
            self._call(f"starting the storage pool {name}", pool.create, 0)

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target:
        from explorer.images.qemu_floor import free_port

        prefix = f"explorer-{scenario.name}-vagrant-{run_id}-{index}-{os.getpid()}-"
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{run_id}-{index}-{os.getpid()}-"))
        shutil.copyfile(VAGRANTFILE, workdir / "Vagrantfile")
        workdir.chmod(0o711)  # QEMU's user writes the console file in it (libvirt labels the file)
        console = workdir / "console.log"
        ssh_port, host_port = free_port(), free_port()
        env = {**os.environ, "VAGRANT_CWD": str(workdir), "EXPLORER_SCENARIO": scenario.name,
               "EXPLORER_SSH_PORT": str(ssh_port), "EXPLORER_HOST_PORT": str(host_port),
               "EXPLORER_DOMAIN_PREFIX": prefix, "EXPLORER_LIBVIRT_DRIVER": _driver(artifact),
               "EXPLORER_MEMORY_MIB": str(self.memory_mib(scenario)), "EXPLORER_CONSOLE": str(console)}
        target = Target(side=self.side.name, name=prefix + "default", run_id=run_id, host_port=host_port)
        log = (workdir / "vagrant-up.log").open("wb")
        up = subprocess.Popen(["vagrant", "up", "--provider=libvirt"], cwd=workdir, env=env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        target.mark("created")
        target.handle = VagrantMachine(workdir, env, up, guest.ConsoleWatcher(console))
        target.handle.watcher.start()
        target.facts.update(domain=target.name, accel=artifact.facts.get("accel"), box=artifact.facts.get("box"),
                            memory_mib=self.memory_mib(scenario), vcpus=scenario.vm.vcpus, host_port=host_port,
                            forwarded_ports={"22": ssh_port}, vagrant_cwd=str(workdir))
        return target

    def poll(self, target: Target) -> None:
        machine: VagrantMachine = target.handle
        machine.watcher.read_new()
        if "kernel" in machine.watcher.seen:
            target.mark("kernel", machine.watcher.seen["kernel"])
        if machine.process is None:
            machine.process = _qemu_process(target.name)
            if machine.process is not None:
                target.mark("process")
                target.facts["qemu_pid"] = machine.process.pid
        now = time.monotonic()
        if "ssh" not in target.marks and now - machine.probed_at >= PROBE_EVERY_S:
            machine.probed_at = now  # as on the fullvm side: a banner probe per 0.5 s, no more
            if _ssh_banner(target.facts["forwarded_ports"]["22"]):
                target.mark("ssh")
        code = machine.up.poll()
        if code is not None and "up" not in target.marks:
            if code != 0:
                raise BackendError(f"vagrant up exited {code} for {target.name}",
                                   hint="its last lines:\n" + self.logs(target))
            target.mark("up")

    def after_ready(self, target: Target) -> None:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while "up" not in target.marks and time.monotonic() < deadline:
            self.poll(target)
            time.sleep(0.1)

    def runtime_pids(self, target: Target) -> dict[int, str]:
        process = target.handle.process if target.handle is not None else None
        return {process.pid: "VMM"} if process is not None and process.is_running() else {}

    def guest_view(self, target: Target) -> GuestView:
        out = _vagrant(["ssh", "--no-tty", "-c", guest.view_script()], target.handle.workdir,
                       env=target.handle.env, timeout=120).stdout
        view = guest.parse_view(out, channel="vagrant ssh")
        if view is None:
            raise BackendError(f"vagrant ssh printed no guest view for {target.name}: {out.strip()[-300:]}")
        return view

    def logs(self, target: Target, lines: int = 20) -> str:
        if target.handle is None:
            return ""
        with contextlib.suppress(OSError):
            text = (target.handle.workdir / "vagrant-up.log").read_text(errors="replace")
            # a Ruby backtrace says least at its end: keep what came before its frames
            kept = [line for line in text.rstrip().splitlines() if not line.startswith("\tfrom ")]
            return "\n".join(kept[-lines:])
        return ""

    def destroy(self, target: Target) -> None:
        if target.handle is not None:
            target.handle.watcher.stop()
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
                    _vagrant(["destroy", "-f"], workdir, env=env, timeout=DESTROY_TIMEOUT_S)
            for name in [domain] if domain else self._domains_in(workdir):
                self._destroy_domain(name)
                self._delete_volumes(name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _domains_in(self, workdir: Path) -> list[str]:
        """The domain names a work dir's machine has (from its name: RUN-INDEX-PID)."""
        run, index, pid = _workdir_labels(workdir)
        return [d.name() for d in self._call("listing domains", self.conn.listAllDomains, 0)
                if re.fullmatch(rf"explorer-.+-vagrant-{run}-{index}-{pid}-default", d.name())]

    def _delete_volumes(self, prefix: str) -> list[str]:
        """The volumes of explorer's pool whose name starts with `prefix`: a machine's disks
        (its domain's name), or the base volume uploaded from a box."""
        from explorer.images.vagrant_box import STORAGE_POOL

        libvirt, deleted = _libvirt_module(), []
        with contextlib.suppress(libvirt.libvirtError):
            pool = self.conn.storagePoolLookupByName(STORAGE_POOL)
            pool.refresh(0)
            for volume in pool.listAllVolumes(0):
                if volume.name().startswith(prefix):
                    volume.delete(0)
                    deleted.append(volume.name())
        return deleted

    def _remove_box(self, name: str) -> list[str]:
        """A box of explorer's and the base volume vagrant-libvirt uploaded from it."""
        removed = []
        with contextlib.suppress(BackendError):
            _vagrant(["box", "remove", "--force", "--all", name], Path.cwd(), timeout=120)
            removed.append(f"vagrant box {name}")
        uploaded = self._delete_volumes(name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_")
        return removed + [f"base volume {volume}" for volume in uploaded]

    def remove_images(self) -> list[str]:
        """`explorer clean --cache`: every explorer box, its uploaded volume, and the pool;
        none while a live run's machine may be using them."""
        from explorer.images.vagrant_box import STORAGE_POOL

        live = [d for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")
                if owner_alive(_workdir_labels(d)[2])]
        if live:
            return []  # removed nothing: what clean prints is what it removed

        removed = [line for name in _explorer_boxes() for line in self._remove_box(name)]
        libvirt = _libvirt_module()
        with contextlib.suppress(libvirt.libvirtError):
            pool = self.conn.storagePoolLookupByName(STORAGE_POOL)
            if not pool.listAllVolumes(0):
                with contextlib.suppress(libvirt.libvirtError):
                    pool.destroy()
                pool.undefine()
                removed.append(f"storage pool {STORAGE_POOL}")
        return removed

    def clean(self, run_id: str | None = None) -> list[str]:
        """The machines of one run, or of every explorer process that no longer runs."""
        removed = []
        for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{run_id + '-' if run_id else ''}*"):
            if run_id or not owner_alive(_workdir_labels(workdir)[2]):
                self._remove_machine(workdir, {**os.environ, "VAGRANT_CWD": str(workdir)}, None, None)
                removed.append(f"vagrant machine {workdir}")
        for domain in self._call("listing domains", self.conn.listAllDomains, 0):
            match = re.fullmatch(r"explorer-.+-vagrant-([0-9a-f]+)-\d+-(\d+)-default", domain.name())
            if match and (match[1] == run_id if run_id else not owner_alive(match[2])):
                if self._destroy_domain(domain.name()):
                    removed.append(f"domain {domain.name()}")
                self._delete_volumes(domain.name())
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


class VagrantMachine:
    """A Target's handle: the run's VAGRANT_CWD, its environment, and `vagrant up`."""

    def __init__(self, workdir: Path, env: dict[str, str], up: subprocess.Popen[bytes],
                 watcher: guest.ConsoleWatcher) -> None:
        self.workdir, self.env, self.up, self.watcher = workdir, env, up, watcher
        self.process: Any = None
        self.probed_at = 0.0


def _vagrant(args: list[str], cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["vagrant", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise BackendUnavailable("vagrant is not installed", hint=HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"vagrant {args[0]} did not finish in {timeout:.0f}s") from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-8:])
        raise BackendError(f"vagrant {args[0]} exited {exc.returncode}:\n{tail}") from exc


def _workdir_labels(workdir: Path) -> tuple[str, str, str]:
    """(run id, index, owner PID) from a work dir's name: explorer-vagrant-RUN-INDEX-PID-xxxx."""
    run, index, pid = workdir.name.removeprefix(WORKDIR_PREFIX).split("-")[:3]
    return run, index, pid


def _explorer_boxes() -> list[str]:
    """Names of the boxes explorer added (`vagrant box list`: NAME (PROVIDER, VERSION))."""
    try:
        out = _vagrant(["box", "list"], Path.cwd(), timeout=120).stdout
    except BackendError:
        return []
    return [line.split()[0] for line in out.splitlines() if line.startswith("explorer/")]


def _driver(artifact: Artifact) -> str:
    return "kvm" if artifact.facts.get("accel") == "kvm" else "qemu"


def _libvirt_module() -> Any:
    import libvirt

    return libvirt
