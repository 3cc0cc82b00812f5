"""The shared words: what a side is, what it starts from, what runs, what it says of itself.

Everything above this module (images, engines, guest channels, probes, the lifecycle, the
output wing) speaks in these terms; this module imports nothing of explorer's above it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

import psutil

KINDS = ("container", "vm")
HOST_KERNEL = "the host's kernel"  # what answers a container's system calls (a Side's `answers`)
H = TypeVar("H")  # a Target's handle: what its engine holds of it, and hands its guest channel

LABEL_MANAGED = "io.explorer.managed"  # on what a run creates: containers, domains
LABEL_IMAGE = "io.explorer.image"  # on cached images; containers inherit it, so it must differ
LABEL_RUN = "io.explorer.run"
LABEL_SCENARIO = "io.explorer.scenario"
LABEL_RECIPE = "io.explorer.recipe"
LABEL_OWNER = "io.explorer.owner"  # the PID of the explorer process that made it: clean spares a live run's


@dataclass(frozen=True)
class Side:
    """One point of the isolation spectrum, as the registry (explorer/sides.py) names it: a
    kind (`container` or `vm`: what the document's claims speak of), a title for tables, the
    roles of the host processes it creates, the scenario timeout that bounds its readiness,
    a colour for plots, the roles whose system calls reach the host's kernel for the workload,
    and the import string of the function that assembles its backend from parts (loaded
    lazily, so that libvirt is only imported when a VM side is used)."""

    name: str
    kind: str
    title: str
    backend: str  # "module:function", called with this Side, returning its assembled Backend
    roles: tuple[str, ...]  # roles of the host processes that run the workload, e.g. shim, VMM
    about: str  # one line: what this side is, for `explorer sides` and the README
    timeout: str = "ready_s"  # which of the scenario's timeouts bounds its readiness
    color: str = "gray"
    max_repeats: int | None = None  # a slow side may default to fewer starts than the scenario's
    package: str | None = None  # the distribution package it needs beyond the common set (optional)
    density_count: int = 10  # `explorer density`'s default instance count (the memory guard may stop sooner)
    # the roles whose system calls the host's kernel serves for the workload: whose seccomp
    # filters bound what of that kernel the side may reach (a shim or a proxy serves no workload call)
    kernel_roles: tuple[str, ...] = ("workload",)
    # which kernel answers the workload's own system calls: the host's, gVisor's Sentry, a guest's
    answers: str = HOST_KERNEL

    @property
    def on_host_kernel(self) -> bool:
        return self.answers == HOST_KERNEL

    def meta(self) -> dict[str, Any]:
        """What a result document records about the side."""
        out = asdict(self)
        out["roles"] = list(self.roles)
        out["kernel_roles"] = list(self.kernel_roles)
        for key in ("backend", "max_repeats", "timeout", "package", "density_count", "answers"):
            out.pop(key)
        return out


LOOPBACK = "127.0.0.1"  # the only address a load client, a readiness check or a probe connects to


@dataclass(frozen=True)
class NetPath:
    """One way the host's load client reaches a side's workload, on a loopback address always:
    a port published or forwarded on the host's 127.0.0.1, or 127.0.0.1 inside the workload's
    own network namespace, which the client joins with `prefix` (nsenter --net=/proc/PID/ns/net).
    Never a bridge or any other address: a path that would need one is not offered. A path the
    side offers but cannot serve here (nsenter missing, the namespace gone) says why in `missing`,
    and is reported as not measured."""

    name: str  # the path's name in tables and in the document: "published port (docker-proxy)"
    description: str  # one sentence: what carries the traffic
    port: int
    prefix: tuple[str, ...] = ()  # the argv a client is started under to be on this path
    relay: str | None = None  # the host program that relays every byte (docker-proxy); None: none
    missing: str | None = None  # why it cannot be measured here (None: it can)
    host: str = LOOPBACK
    inside: bool = False  # the client runs inside the guest (by `prefix`), its own copy of the tool there

    def __post_init__(self) -> None:
        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"a load path must stay on loopback, not {self.host} ({self.name})")

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def meta(self) -> dict[str, Any]:
        """What a result document records about the path, beside its figures."""
        return {
            "description": self.description,
            "endpoint": self.endpoint,
            "prefix": list(self.prefix),
            "relay": self.relay,
            "inside": self.inside,
        }


def owner_alive(pid: str | int | None) -> bool:
    """Whether the explorer process that made a container, domain or work file still runs
    (not counting this one: what this process itself labelled is never a live *other* run).
    Unlabelled (made before owners were recorded, or by hand) counts as not alive."""
    text = str(pid if pid is not None else "")
    return text.isdigit() and int(text) != os.getpid() and psutil.pid_exists(int(text))


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (for a hostfwd or a forwarded port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Accel:
    """How a VM side's guest runs: `kvm` where a real boot test proved KVM works here, else
    `tcg` (QEMU's software emulation), and the boot test's reason (explorer/kvm.py)."""

    mode: str  # "kvm" or "tcg"
    reason: str

    @property
    def kvm(self) -> bool:
        return self.mode == "kvm"


@dataclass(frozen=True)
class SavedSnapshot:
    """A booted VM's state, saved once for the run's restores (the snapshot side): when and how
    long its one boot and its save took, the state's size, the boot it resumes, its domain name."""

    domain: str
    boot_to_ready_s: float
    save_s: float
    saved_at: float  # the host's monotonic clock at the save (engine state: never in the document)
    state_bytes: int
    boot_id: str | None

    def record(self, restored_at: float) -> dict[str, Any]:
        """What a restored instance's record keeps of it (explorer/result: Snapshot)."""
        return {
            "domain": self.domain,
            "boot_to_ready_s": self.boot_to_ready_s,
            "save_s": self.save_s,
            "state_bytes": self.state_bytes,
            "boot_id": self.boot_id,
            "saved_for_s": round(restored_at - self.saved_at, 3),
        }


@dataclass
class Artifact:
    """What a side starts from, built or found: an image, or a VM disk + kernel. `facts` are
    recorded in the result (sizes, the image's config); what a source hands the engine to act
    on is a typed field, set by the source's prepare (None where its kind of source has none)."""

    ref: str
    facts: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    accel: Accel | None = None  # a VM's accelerator, proven by a boot test
    image_id: str | None = None  # a container image's id (its content hash in every image store)
    labels: dict[str, str] = field(default_factory=dict)  # a container image's labels
    cmdline: str | None = None  # a VM's kernel command line
    filesystem: str | None = None  # the guest's root filesystem (ext4 on a VM disk, overlay for nspawn)
    box: str | None = None  # the Vagrant box's name
    service: str | None = None  # the workload's systemd unit in a full OS
    snapshot: SavedSnapshot | None = None  # a booted VM's saved state (the snapshot side's, once adopted)


@dataclass
class Target(Generic[H]):
    """A running workload. `marks` are monotonic timestamps of startup milestones. `handle` is
    what its engine holds of it and hands the channel into the guest: a Docker container, a
    RunningVM, a VagrantMachine (explorer/guest/handles.py); None until the engine has made it."""

    side: str
    name: str
    run_id: str
    host_port: int
    handle: H | None = None
    marks: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # the record the document keeps (TargetRecord's fields)
    t0: float = 0.0  # the monotonic time just before the engine's create call: the starts' zero

    @property
    def held(self) -> H:
        """The handle of a target its engine has made (LookupError before)."""
        if self.handle is None:
            raise LookupError(f"{self.name} has no handle yet: its engine has not made it")
        return self.handle

    def mark(self, milestone: str, when: float | None = None) -> None:
        self.marks.setdefault(milestone, time.monotonic() if when is None else when)


@dataclass
class GuestProcess:
    pid: int
    ppid: int
    name: str
    kernel_thread: bool


@dataclass
class GuestView:
    """What the workload's own environment says about itself, seen from inside."""

    kernel_release: str
    boot_id: str | None
    processes: list[GuestProcess]
    channel: str  # how it was obtained: "docker exec", "virtio-serial port explorer.view", ...
    agent_pids: list[int] = field(default_factory=list)  # explorer's own, left out of processes
    agent_names: list[str] = field(default_factory=list)  # their names, in the order of agent_pids
    viewer_parent: int | None = None  # the parent of the shell that took the view (the shell is left out)
    uptime_s: float | None = None  # seconds since the guest's kernel booted, by its own clock


@dataclass(frozen=True)
class InsideAs:
    """One run of the inside probe in a guest: who it runs as (`label`, for the document) and its
    arguments beyond the binary (the workload's user: --as-pid PID, as the guest numbers it)."""

    label: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class InsideProgram:
    """What a channel delivers into its guest and runs there: the inside probe's binary (a host
    path), each run to make, and the probe's own deadline (the channel adds its own beyond it)."""

    binary: str
    runs: tuple[InsideAs, ...]
    timeout_s: int
    name: str  # the file's name where it lands (unique to the run)


@dataclass
class InsideOutput:
    """What one run printed: None as returncode where the channel's own deadline ended it."""

    label: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float


@dataclass
class InsideDelivery:
    """The probe's stay in a guest: where it went and how (`how`), each run's output, and its
    removal (None: removed; else why not, and the run says it)."""

    how: str
    outputs: list[InsideOutput]
    removal_error: str | None = None
