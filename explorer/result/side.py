"""A side's record in a result document: what the side is (from the registry, written into the
document so that no reader needs the registry), what ran it, what the probes found, its starts
and its load."""

from __future__ import annotations

from pydantic import Field

from explorer.result.base import Record, Storage
from explorer.result.density import DensityFigures
from explorer.result.inside import InsideSide
from explorer.result.load import SideLoad
from explorer.result.probes import Identity, Image, Isolation, Kernel, Memory, Startup, Visibility


class EngineFacts(Record):
    """What runs the side, as its engine described itself (`summary`: one line)."""

    summary: str | None = None
    engine: str | None = None  # docker, podman, systemd-nspawn
    engine_version: str | None = None
    api_version: str | None = None
    storage_driver: str | None = None
    cgroup_version: str | None = None
    default_runtime: str | None = None
    runtime: str | None = None
    runtime_summary: str | None = None
    userns: str | None = None
    runsc_path: str | None = None
    runsc_args: list[str] | None = None
    runsc_platform: str | None = None
    runsc_version: str | None = None
    storage: Storage | None = None
    hypervisor: str | None = None
    uri: str | None = None  # explorer.result/1's libvirt facts
    domain_type: str | None = None
    libvirt_version: str | None = None
    qemu_version: str | None = None
    warning: str | None = None
    vagrant_version: str | None = None
    vagrant_libvirt_version: str | None = None


class Snapshot(Record):
    """The one boot a restored VM resumes: how long it took, what was saved, when."""

    domain: str
    boot_to_ready_s: float
    save_s: float
    state_bytes: int
    boot_id: str | None = None
    saved_for_s: float | None = None  # seconds on the host between the save and the probed start


class Availability(Record):
    available: bool
    reason: str | None = None


class GuestMemory(Availability):
    total_bytes: int | None = None
    used_bytes: int | None = None


class SystemdAnalyze(Availability):
    text: str | None = None
    kernel_s: float | None = None
    initrd_s: float | None = None
    userspace_s: float | None = None
    firmware_s: float | None = None
    loader_s: float | None = None


class TargetRecord(Record):
    """What the probed instance was, as a reader may check it with the engine's own tools
    (docker inspect, virsh dominfo, machinectl): its names, its configured hardware, what its
    guest said of its own boot. What the engine needed to run it is not here (its handle's)."""

    container_id: str | None = None
    domain: str | None = None
    uuid: str | None = None
    machine: str | None = None  # the system container's machine name
    box: str | None = None  # the Vagrant box
    process_named: bool | None = None  # the workload's name was seen running (confirms the names)
    userns_mode: str | None = None
    memory_mib: int | None = None
    vcpus: int | None = None
    cpu: str | None = None
    forwarded_ports: dict[str, int] | None = None  # guest port -> the host's 127.0.0.1 port
    staged_by_copy: list[str] | None = None
    guest_filesystem: str | None = None
    guest_uptime_s: dict[str, float] | None = None  # milestone -> the guest kernel's own clock
    guest_memory: GuestMemory | None = None
    systemd_analyze: SystemdAnalyze | None = None
    storage: Storage | None = None
    snapshot: Snapshot | None = None


class SideRecord(Record):
    """One side of a run: the registry's words for it, then what was measured."""

    name: str
    kind: str | None  # container or vm (None: an explorer.result/1 side of unknown kind)
    title: str
    roles: list[str] = Field(default_factory=list)
    kernel_roles: list[str] = Field(default_factory=list)
    about: str | None = None
    color: str | None = None
    backend: str | None = None
    engine: EngineFacts = Field(default_factory=EngineFacts)
    accel: str = "native"  # kvm or tcg for a VM; native for a container
    accel_reason: str | None = None
    visibility: Visibility | None = None
    kernel: Kernel | None = None
    isolation: Isolation | None = None
    identity: Identity | None = None
    inside: InsideSide | None = None  # the inside probe: what the workload sees of the host, what it reaches
    memory: Memory | None = None
    image: Image | None = None
    target: TargetRecord = Field(default_factory=TargetRecord)
    startup: Startup | None = None
    load: SideLoad | None = None
    density: DensityFigures | None = None  # merged in from a density result (claim 7)
