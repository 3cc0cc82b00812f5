"""The bare floor: the same kernel, initramfs and disk booted by QEMU started by hand, with
no libvirt in between, and waited on with the same readiness loop. What the VM side costs
beyond this is libvirt's; what this costs is the VM's own.

Each boot writes to a throwaway qcow2 overlay backed by the cached disk, so the cached disk
stays pristine and boots can run side by side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.errors import BackendError
from explorer.guest import ConsoleWatcher, parse_marks
from explorer.guest.viewport import PORT as VIEW_PORT
from explorer.guest.viewport import ViewChannel
from explorer.images import partials
from explorer.images.microvm.vm_image import VMImage
from explorer.images.vmdisk import make_overlay
from explorer.kvm import QEMU
from explorer.model import free_port
from explorer.readiness import wait_ready

CPU_MODELS = {"default": None, "maximum": "max"}


@dataclass
class FloorVM:
    """A hand-started QEMU; its console watched as the libvirt side's is (`watcher.seen` are
    host monotonic times of the milestones the console showed)."""

    process: subprocess.Popen[bytes]
    host_port: int
    overlay: Path
    workdir: Path
    started: float
    watcher: ConsoleWatcher
    extra_ports: dict[int, int]  # guest port -> host port
    view: ViewChannel | None = None  # the guest view port, connected, where the VM has one

    @property
    def marks(self) -> dict[str, float]:
        return self.watcher.seen

    def poll(self) -> None:
        """Catch up with the console; raise if QEMU is gone (the guest died or failed to start)."""
        self.watcher.read_new()
        if self.process.poll() is not None:
            errors = (self.workdir / "qemu.err").read_text(errors="replace").strip()
            tail = "\n".join((self.watcher.tail(15) + "\n" + errors).strip().splitlines()[-15:])
            raise BackendError(f"qemu exited with code {self.process.returncode}; console and stderr tail:\n{tail}")


def qemu_argv(
    image: VMImage,
    overlay: Path,
    console: Path,
    host_port: int,
    guest_port: int,
    memory_mib: int = 512,
    vcpus: int = 1,
    cpu: str = "default",
    accel: str = "tcg",
    machine: str = "pc",
    extra_ports: dict[int, int] | None = None,
    agent_socket: Path | None = None,
    view_socket: Path | None = None,
) -> list[str]:
    """Direct kernel boot, virtio disk and NIC, user networking forwarding 127.0.0.1 only
    (the workload's port, and `extra_ports` guest -> host), and optionally the guest agent's
    virtio-serial port, as the full-OS VM side's domain has, and the microVM's view port."""
    forwards = {guest_port: host_port, **(extra_ports or {})}
    netdev = "user,id=n0," + ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in forwards.items())
    argv = [
        QEMU,
        "-accel",
        accel,
        "-machine",
        machine,
        "-m",
        str(memory_mib),
        "-smp",
        str(vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initramfs),
        "-append",
        image.cmdline,
        "-drive",
        f"file={overlay},if=virtio,format=qcow2",
        "-netdev",
        netdev,
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
        "-device",
        "virtio-rng-pci",
    ]  # entropy: the workload's getrandom() does not block
    ports = [
        (sock, name)
        for sock, name in ((agent_socket, "org.qemu.guest_agent.0"), (view_socket, VIEW_PORT))
        if sock is not None
    ]
    if ports:
        argv += ["-device", "virtio-serial"]
    for number, (sock, name) in enumerate(ports):
        argv += [
            "-chardev",
            f"socket,path={sock},server=on,wait=off,id=port{number}",
            "-device",
            f"virtserialport,chardev=port{number},name={name}",
        ]
    model = CPU_MODELS.get(cpu, cpu)
    return argv + (["-cpu", model] if model else [])


@contextmanager
def floor_vm(
    image: VMImage, guest_port: int, agent: bool = False, view: bool = False, **qemu: Any
) -> Iterator[FloorVM]:
    """Boot `image`; on exit kill QEMU and delete the overlay and console, whatever happened.
    With `view`, the microVM's view port too, connected at once as the libvirt side does."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{partials.FLOOR}{os.getpid()}-"))
    process, watcher, channel = None, None, None
    try:
        overlay, console = workdir / "overlay.qcow2", workdir / "console.log"
        make_overlay(image.disk, overlay)
        port = free_port()
        if "extra_ports" in qemu:
            qemu["extra_ports"] = {guest: free_port() for guest in qemu["extra_ports"]}
        argv = qemu_argv(
            image,
            overlay,
            console,
            port,
            guest_port,
            agent_socket=workdir / "agent.sock" if agent else None,
            view_socket=workdir / "view.sock" if view else None,
            **qemu,
        )
        started = time.monotonic()
        with (workdir / "qemu.err").open("wb") as errors:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        watcher = ConsoleWatcher(console)
        watcher.start()
        if view:
            channel = ViewChannel(workdir / "view.sock")
            channel.connect()
        yield FloorVM(process, port, overlay, workdir, started, watcher, dict(qemu.get("extra_ports") or {}), channel)
    finally:
        if channel is not None:
            channel.close()
        if process is not None:
            process.kill()
            process.wait()
        if watcher is not None:
            watcher.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def boot_to_ready(image: VMImage, ready: str, guest_port: int, timeout_s: float = 300.0, **qemu: Any) -> dict[str, Any]:
    """One bare boot to a protocol-level answer on 127.0.0.1; seconds since QEMU started."""
    with floor_vm(image, guest_port, view=True, **qemu) as vm:
        ready_at = wait_ready(
            ready, "127.0.0.1", vm.host_port, vm.started + timeout_s, between=vm.poll, what="the hand-started VM"
        )
        vm.poll()
        view = vm.view.request(timeout_s=15) if vm.view is not None else None
        vm.poll()
        text = vm.watcher.text()
        return {
            "ready_s": ready_at - vm.started,
            "marks_s": {name: when - vm.started for name, when in vm.marks.items()},
            "guest_marks": parse_marks(text),
            "view": view,
            "console": text,
            "qemu_pid": vm.process.pid,
        }
