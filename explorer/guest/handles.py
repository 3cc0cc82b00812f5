"""What an engine hands the channel into its guest, as typed objects (a Target's handle):
a libvirt domain with its console, its QEMU and its view port (RunningVM), or a Vagrant
machine with its VAGRANT_CWD and environment, which `vagrant ssh` needs (VagrantMachine), or a
system container's pieces on the host, its PID 1 among them, which nsenter needs (NspawnMachine).
A container's (Docker's, Podman's) is the Docker SDK's Container with what its engine needs of it
(RunningContainer). Each channel says in its signature which one it takes, and so which engines it
goes with. What an engine needs to act on what it started (a PID, a port, a work dir) lives here;
what the document records of it is the Target's facts."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from docker.models.containers import Container

from explorer.guest import ConsoleWatcher
from explorer.guest.viewport import ViewChannel


@dataclass
class RunningContainer:
    """A Target's handle: the container (the Docker SDK's, over Docker's or Podman's API), the
    host PID of its first process, the workload's port inside and its process names."""

    container: Container
    workload_port: int
    process_names: tuple[str, ...]
    init_pid: int = 0  # 0 until the engine has started it


class RunningVM(ConsoleWatcher):
    """A Target's handle: the console watcher, the domain, its QEMU, the view port where the
    machine has one, and the work dir to remove."""

    def __init__(self, workdir: Path, console: Path) -> None:
        super().__init__(console)
        self.workdir = workdir
        self.domain: Any = None
        self.process: psutil.Process | None = None
        self.view: ViewChannel | None = None
        self.probes: dict[str, Any] = {}  # the machine's milestone probes' state, and when each last ran
        self.closers: list[Any] = []
        self.workload_port = 0  # the workload's port in the guest
        self.forwarded_ports: dict[int, int] = {}  # guest port -> the host's 127.0.0.1 port (hostfwd)

    def stop(self) -> None:
        if self.view is not None:
            self.view.close()
        for close in self.closers:
            close(self.probes)
        super().stop()


class VagrantMachine:
    """A Target's handle: the run's VAGRANT_CWD, its environment, `vagrant up`, the console."""

    def __init__(
        self, workdir: Path, env: dict[str, str], up: subprocess.Popen[bytes], watcher: ConsoleWatcher
    ) -> None:
        self.workdir, self.env, self.up, self.watcher = workdir, env, up, watcher
        self.process: Any = None
        self.domain: Any = None  # the libvirt domain vagrant-libvirt defined (its guest agent), once QEMU runs
        self.forwarded_ports: dict[int, int] = {}  # guest port -> the host's 127.0.0.1 port
        self.probes: dict[str, Any] = {}  # the milestone probes' state
        self.up_returned: float | None = None  # when `vagrant up` exited, stamped as it did
        self.up_waiter = threading.Thread(target=self._wait_for_up, name=f"vagrant-up:{workdir.name}", daemon=True)
        self.up_waiter.start()

    def _wait_for_up(self) -> None:
        self.up.wait()
        self.up_returned = time.monotonic()

    def wait_for_up(self, timeout_s: float) -> None:
        """Until `vagrant up` has returned (vagrant ssh before that may meet its lock)."""
        self.up_waiter.join(timeout_s)


@dataclass
class NspawnMachine:
    """A Target's handle: what one instance holds on the host, every piece named."""

    name: str  # the machine, its netns and its cgroups
    workdir: Path
    cgroups: list[Path]  # one per hierarchy
    workload_port: int = 0
    process_names: tuple[str, ...] = ()
    service: str = "explorer-workload.service"  # the workload's unit in the container
    netns: str | None = None
    process: subprocess.Popen[bytes] | None = None  # unshare -> sh -> systemd-nspawn (one PID)
    proxy: subprocess.Popen[bytes] | None = None  # systemd-socket-activate -> ip netns exec -> proxyd
    proxy_started: bool = False  # a first connection made socket-activate exec the proxy
    notify: socket.socket | None = None
    leader: int | None = None  # the container's PID 1 (systemd), a host PID
    unit_cgroups: list[Path] = field(default_factory=list)  # where the workload unit's processes are

    @property
    def upper(self) -> Path:
        return self.workdir / "upper"

    @property
    def merged(self) -> Path:
        return self.workdir / "merged"

    @property
    def log(self) -> Path:
        return self.workdir / "console.log"
