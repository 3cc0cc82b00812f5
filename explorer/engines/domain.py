"""libvirt as the VMs' hypervisor: the connection (every call's error wrapped once, here at
the boundary), and what a domain is made of: its XML, its files staged for QEMU's user, its
QEMU process. The engines (engines/libvirt.py, engines/vagrant.py, engines/snapshot.py)
share these; none of them imports another's private names.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import libvirt  # optional dependency (libvirt-python): only VM sides load this module
import psutil

from explorer.errors import BackendError, BackendUnavailable, UsageError
from explorer.images.vmdisk import make_overlay
from explorer.kvm import device_usable_by
from explorer.model import Artifact, NetPath
from explorer.scenario import Scenario

URI = "qemu:///system"
START_HINT = "run scripts/setup-host (it starts virtlogd and libvirtd)"
NS = "https://explorer.invalid/libvirt/1"  # the <metadata> namespace that labels our domains
KILL_WAIT_S = 5.0
AGENT_PORT = "org.qemu.guest_agent.0"  # qemu-guest-agent's virtio-serial port

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised, not printed


class Hypervisor:
    """One connection to libvirtd, opened on first use."""

    def __init__(self) -> None:
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            try:
                self._conn = libvirt.open(URI)
            except libvirt.libvirtError as exc:
                raise BackendUnavailable(f"libvirtd is not answering on {URI}: {exc}", hint=START_HINT) from exc
        return self._conn

    def call(self, what: str, fn: Any, *args: Any) -> Any:
        """A libvirt call, its error wrapped once, here at the boundary."""
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_CONNECT or exc.get_error_domain() == libvirt.VIR_FROM_RPC:
                raise BackendUnavailable(f"libvirtd stopped answering while {what}: {exc}", hint=START_HINT) from exc
            raise BackendError(f"libvirt failed while {what}: {exc}") from exc

    @functools.cached_property
    def qemu_ids(self) -> tuple[int, int] | None:
        """The uid:gid libvirt runs QEMU as (its DAC base label, e.g. +64055:+108), if it says;
        read once per connection (a capabilities call can make libvirt re-probe QEMU)."""
        caps = ET.fromstring(self.call("reading the capabilities", self.conn.getCapabilities))
        labels = (label.text or "" for label in caps.iterfind("host/secmodel/baselabel[@type='qemu']"))
        match = next(filter(None, (re.fullmatch(r"\+?(\d+):\+?(\d+)", text.strip()) for text in labels)), None)
        return (int(match[1]), int(match[2])) if match else None

    def check(self) -> dict[str, Any]:
        versions = [self.call("asking versions", fn) for fn in (self.conn.getLibVersion, self.conn.getVersion)]
        lib, qemu = (f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}" for v in versions)
        facts = {
            "hypervisor": "qemu",
            "libvirt_version": lib,
            "qemu_version": qemu,
            "summary": f"libvirt {lib}, QEMU {qemu}",
        }
        ids = self.qemu_ids
        if ids and not device_usable_by(*ids):  # libvirt then re-probes QEMU ~12x per start (~1 min here)
            facts["warning"] = (
                f"/dev/kvm is not read-write for QEMU's user {ids[0]}:{ids[1]}, so libvirt "
                "re-probes QEMU at every VM start; fix: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm"
            )
        return facts

    def domain(self, name: str) -> Any:
        return self.call(f"looking up {name}", self.conn.lookupByName, name)

    def state(self, name: str) -> str:
        names = {
            libvirt.VIR_DOMAIN_RUNNING: "running",
            libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
            libvirt.VIR_DOMAIN_CRASHED: "crashed",
        }
        try:
            state, _reason = self.conn.lookupByName(name).state()
        except (libvirt.libvirtError, BackendUnavailable):
            return "gone"
        return names.get(state, f"in state {state}")

    def destroy_domain(self, name: str) -> bool:
        """Destroy `name` (undefine it too, had someone made it persistent); False if absent."""
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

    def domains(self) -> list[Any]:
        return self.call("listing domains", self.conn.listAllDomains, 0)

    def labels(self, domain: Any) -> dict[str, str] | None:
        """explorer's labels on a domain (run, scenario, index, pid, workdir), or None for a
        domain explorer did not make (never touched)."""
        try:
            return dict(ET.fromstring(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS)).attrib)
        except (libvirt.libvirtError, ET.ParseError):
            return None

    def pool(self, name: str) -> Any | None:
        try:
            return self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return None

    def delete_volumes(self, pool_name: str, prefix: str) -> list[str]:
        """The volumes of a storage pool whose name starts with `prefix`."""
        deleted: list[str] = []
        pool = self.pool(pool_name)
        if pool is None:
            return deleted
        try:
            pool.refresh(0)
            for volume in pool.listAllVolumes(0):
                if volume.name().startswith(prefix):
                    volume.delete(0)
                    deleted.append(volume.name())
        except libvirt.libvirtError:
            pass
        return deleted


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
    view_port: str = ""  # a virtio-serial channel of that name for explorer's init to answer view requests on
    host_port: int = 0

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"


HOSTFWD = "QEMU user-mode networking (hostfwd)"


def hostfwd_path(host_port: int) -> NetPath:
    """A VM's one path from the host: QEMU's user-mode network (slirp) forwards the host's
    127.0.0.1:port into the guest, in QEMU's own process, the slowest path a VM has."""
    return NetPath(
        HOSTFWD,
        f"QEMU user-mode networking: hostfwd on the host's 127.0.0.1:{host_port}, relayed by QEMU's slirp "
        "(in the VMM's own process) to the guest's virtio NIC",
        host_port,
        relay="QEMU's slirp, in the VMM,",
    )


IN_GUEST = "inside the guest (guest agent)"


def in_guest_path(domain: str, guest_port: int) -> NetPath:
    """The load client inside a full-OS guest, against the guest's own loopback, run through its
    guest agent (explorer/guest/agent_run.py): no network path at all, but the client shares
    the guest's vCPU with the workload (and, under TCG, is emulated too)."""
    return NetPath(
        IN_GUEST,
        f"the client run inside the guest by its guest agent (guest-exec), against the guest's own "
        f"127.0.0.1:{guest_port}: no host network path, but the client shares the guest's vCPU with the workload",
        guest_port,
        prefix=(sys.executable, "-m", "explorer.guest.agent_run", URI, domain, "--"),
        inside=True,
    )


def domain_xml(spec: DomainSpec) -> str:
    """A transient domain: direct kernel boot, virtio disk (an overlay), serial console to a
    file, user-mode NIC forwarding 127.0.0.1:host_port only, labelled with the run."""
    q, vm = quoteattr, spec.scenario.vm
    cpu = "<cpu mode='maximum' check='none'/>" if vm.cpu == "maximum" else ""
    forwards = {spec.scenario.workload.port: spec.host_port, **spec.extra_ports}
    netdev = "user,id=explorer0," + ",".join(
        f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in forwards.items()
    )
    channels = [
        name for name, wanted in ((AGENT_PORT, spec.agent), (spec.view_port, bool(spec.view_port))) if wanted
    ]  # libvirt makes each one's socket (under its own channel directory)
    channel_xml = "".join(
        f"\n    <channel type='unix'><target type='virtio' name={q(name)}/></channel>" for name in channels
    )
    labels = {
        "run": spec.run_id,
        "scenario": spec.scenario.name,
        "index": spec.index,
        "pid": os.getpid(),
        "workdir": spec.workdir,
    }  # pid: `explorer clean` spares the domains of a run in progress
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


def stage(workdir: Path, artifact: Artifact, ids: tuple[int, int] | None) -> dict[str, Any]:
    """The run's files, usable by QEMU's user without relabelling the shared cache (no
    dynamic ownership): the overlay is QEMU's own; cached files it cannot reach are
    hard-linked into the 0711 work dir (copied where a link cannot be made)."""
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


def check_memory(scenario: Scenario, memory_mib: int, side: str) -> None:
    """Refuse a VM larger than the host's available memory, before any side starts."""
    available = psutil.virtual_memory().available // 2**20
    if memory_mib > available:
        raise UsageError(
            f"vm.memory_mib: scenario {scenario.name} asks for a {memory_mib} MiB VM "
            f"({side}), but this host has only {available} MiB available",
            hint="lower vm.memory_mib in the scenario",
        )


def channel_path(domain: Any, name: str) -> Path:
    """The host socket libvirt made for the domain's virtio-serial channel `name`."""
    for channel in ET.fromstring(domain.XMLDesc(0)).iter("channel"):
        target, source = channel.find("target"), channel.find("source")
        if target is not None and target.get("name") == name and source is not None and source.get("path"):
            return Path(source.get("path", ""))
    raise BackendError(f"libvirt made no socket for the domain's channel {name}")


def killed(process: psutil.Process | None) -> bool:
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


def qemu_process(name: str) -> psutil.Process | None:
    """The domain's QEMU, from the pid file libvirt's QEMU driver writes for every domain."""
    try:
        return psutil.Process(int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()))
    except (OSError, ValueError, psutil.Error):
        return None
