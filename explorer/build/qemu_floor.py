"""The bare floor: the same kernel, initramfs and disk booted by QEMU started by hand, with
no libvirt in between, and waited on with the same readiness loop. What the VM side costs
beyond this is libvirt's; what this costs is the VM's own.

Each boot writes to a throwaway qcow2 overlay backed by the cached disk, so the cached disk
stays pristine and boots can run side by side.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.build.vm_image import VMImage
from explorer.errors import BackendError, BuildError
from explorer.guest import KERNEL_BANNER, parse_marks, parse_view
from explorer.readiness import wait_ready

QEMU = "qemu-system-x86_64"
CPU_MODELS = {"default": None, "maximum": "max"}


@dataclass
class FloorVM:
    """A hand-started QEMU; `marks` are host monotonic times of what the console showed."""

    process: subprocess.Popen[bytes]
    host_port: int
    console: Path
    overlay: Path
    workdir: Path
    started: float
    marks: dict[str, float] = field(default_factory=dict)

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def scan(self) -> str:
        """Record the console milestones seen so far (host time of first sight)."""
        now, text = time.monotonic(), self.console_text()
        if KERNEL_BANNER in text:
            self.marks.setdefault("kernel", now)
        for name in parse_marks(text):
            self.marks.setdefault(name, now)
        return text

    def watch(self, stop: threading.Event, interval_s: float = 0.01) -> None:
        """Scan the console often, so milestones are timed apart from the readiness loop."""
        while not stop.wait(interval_s):
            self.scan()

    def poll(self) -> None:
        """Record milestones; raise if QEMU is gone (the guest died or failed to start)."""
        text = self.scan()
        if self.process.poll() is not None:
            errors = (self.workdir / "qemu.err").read_text(errors="replace").strip()
            tail = "\n".join((text.strip() + "\n" + errors).strip().splitlines()[-15:])
            raise BackendError(f"qemu exited with code {self.process.returncode}; console and stderr tail:\n{tail}")


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (QEMU binds it for hostfwd)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def qemu_argv(image: VMImage, overlay: Path, console: Path, host_port: int, guest_port: int,
              memory_mib: int = 512, vcpus: int = 1, cpu: str = "default", accel: str = "tcg",
              machine: str = "pc") -> list[str]:
    """Direct kernel boot, virtio disk and NIC, user networking forwarding 127.0.0.1 only."""
    argv = [QEMU, "-accel", accel, "-machine", machine, "-m", str(memory_mib), "-smp", str(vcpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", f"file:{console}",
            "-kernel", str(image.kernel), "-initrd", str(image.initramfs), "-append", image.cmdline,
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}",
            "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-device", "virtio-rng-pci"]  # entropy: the workload's getrandom() does not block
    model = CPU_MODELS.get(cpu, cpu)
    return argv + (["-cpu", model] if model else [])


def make_overlay(disk: Path, overlay: Path) -> None:
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(overlay)],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"qemu-img could not create an overlay on {disk}: {exc.stderr.strip()}") from exc


@contextmanager
def floor_vm(image: VMImage, guest_port: int, **qemu: Any) -> Iterator[FloorVM]:
    """Boot `image`; on exit kill QEMU and delete the overlay and console, whatever happened."""
    workdir = Path(tempfile.mkdtemp(prefix="explorer-floor-"))
    process, watcher, stop = None, None, threading.Event()
    try:
        overlay, console = workdir / "overlay.qcow2", workdir / "console.log"
        make_overlay(image.disk, overlay)
        port = free_port()
        argv = qemu_argv(image, overlay, console, port, guest_port, **qemu)
        started = time.monotonic()
        with (workdir / "qemu.err").open("wb") as errors:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        vm = FloorVM(process, port, console, overlay, workdir, started)
        watcher = threading.Thread(target=vm.watch, args=(stop,), daemon=True)
        watcher.start()
        yield vm
    finally:
        stop.set()
        if process is not None:
            process.kill()
            process.wait()
        if watcher is not None:
            watcher.join()
        shutil.rmtree(workdir, ignore_errors=True)


def boot_to_ready(image: VMImage, ready: str, guest_port: int, timeout_s: float = 300.0,
                  **qemu: Any) -> dict[str, Any]:
    """One bare boot to a protocol-level answer on 127.0.0.1; seconds since QEMU started."""
    with floor_vm(image, guest_port, **qemu) as vm:
        ready_at = wait_ready(ready, "127.0.0.1", vm.host_port, vm.started + timeout_s,
                              between=vm.poll, what="the hand-started VM")
        vm.poll()
        deadline = time.monotonic() + 10  # the view block follows the port by a moment
        while "ready-inside" not in vm.marks and time.monotonic() < deadline:
            time.sleep(0.05)
            vm.poll()
        text = vm.console_text()
        return {
            "ready_s": ready_at - vm.started,
            "marks_s": {name: when - vm.started for name, when in vm.marks.items()},
            "guest_marks": parse_marks(text),
            "view": parse_view(text, "serial console"),
            "console": text,
            "qemu_pid": vm.process.pid,
        }
