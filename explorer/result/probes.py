"""What the probes record of a side (explorer/probes/): its processes as the host and the guest
see them, its kernel, what separates it from the host, who it is on the host, its memory, its
image's size and its starts. Units are in the names (`_bytes`, `_s`); an unknown figure is null,
never a guess."""

from __future__ import annotations

from pydantic import Field

from explorer.result.base import Record, Spread


class Parent(Record):
    pid: int
    name: str


class HostProcess(Record):
    """A host process of the side, as psutil sees it."""

    host_pid: int
    name: str
    cmdline: str
    user: str | None = None
    uid: int | None = None
    threads: int | None = None
    pid_inside: int | None = None  # its PID in its own PID namespace (NSpid), the host's where it has none
    rss_bytes: int | None = None
    pss_bytes: int | None = None
    uss_bytes: int | None = None
    parents: list[Parent] = Field(default_factory=list)
    role: str | None = None  # a runtime process's role (shim, sandbox, gofer, stub, VMM, ...)


class Named(Record):
    """A process `ps -e | grep NAME` finds on the host, and whether it is this side's."""

    host_pid: int
    name: str
    this_target: bool


class RoleGroup(Record):
    role: str
    count: int
    pids: str  # the host PIDs, space-separated


class GuestProcessRecord(Record):
    pid: int
    ppid: int
    name: str
    kernel_thread: bool


class ProcessCount(Record):
    name: str
    count: int


class Inside(Record):
    """What a process listing inside the guest shows (available: False with the reason)."""

    available: bool
    reason: str | None = None
    channel: str | None = None
    processes: list[GuestProcessRecord] = Field(default_factory=list)
    user_process_count: int | None = None
    kernel_thread_count: int | None = None
    workload_pids_inside: list[int] = Field(default_factory=list)
    os_process_count: int | None = None
    os_processes: list[ProcessCount] = Field(default_factory=list)
    explorer_pids_inside: list[int] = Field(default_factory=list)
    explorer_processes_inside: list[str] = Field(default_factory=list)


class Visibility(Record):
    """Are the workload's processes visible in the host's process table, and as what?"""

    process_names: list[str]
    visible_on_host: bool | None  # None: no guest view confirmed the names
    workload_processes: list[HostProcess] = Field(default_factory=list)
    named_on_host: list[Named] | None = None  # None: the names were not confirmed
    runtime_processes: list[HostProcess] = Field(default_factory=list)
    runtime_by_role: list[RoleGroup] = Field(default_factory=list)
    inside: Inside
    names_unconfirmed: str | None = None


class Kernel(Record):
    """Does the workload run on the host's kernel? Release and boot_id, inside against host."""

    host_release: str
    host_boot_id: str
    available: bool
    reason: str | None = None
    guest_release: str | None = None
    guest_boot_id: str | None = None
    same_release: bool | None = None
    same_boot_id: bool | None = None
    guest_uptime_s: float | None = None
    host_uptime_s: float | None = None
    shared: bool | None = None
    basis: str | None = None


class Isolation(Record):
    """What separates the workload's main host process from the host (for a VM: its VMM)."""

    available: bool
    reason: str | None = None
    host_pid: int | None = None
    subject: str | None = None
    namespaces_differing: list[str] = Field(default_factory=list)
    namespaces_shared: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    capability_count: int | None = None
    seccomp: str | None = None


class Identity(Record):
    """Who the workload is on the host (not applicable to a VM: its workload is no host process)."""

    available: bool
    reason: str | None = None
    host_pid: int | None = None
    host_uid: int | None = None
    uid_inside: int | None = None
    runs_as_host_root: bool | None = None
    uid_map: list[list[int]] = Field(default_factory=list)  # [first inside, first outside, count]
    own_user_namespace: bool | None = None
    root_host_uid: int | None = None  # None: root inside is unmapped
    root_is_host_root: bool | None = None
    capabilities: list[str] = Field(default_factory=list)
    capabilities_over_host: list[str] = Field(default_factory=list)
    capability_count_over_host: int | None = None
    subject: str | None = None
    host_user_namespace_initial: bool | None = None
    others_as_host_root: list[str] = Field(default_factory=list)


class MemoryFigures(Record):
    rss_bytes: int
    pss_bytes: int
    uss_bytes: int | None = None
    processes: int | None = None


class Memory(Record):
    """What the workload costs the host in memory: its processes, and the runtime's apart."""

    workload: MemoryFigures
    runtime: MemoryFigures
    runtime_roles: dict[str, MemoryFigures] = Field(default_factory=dict)
    host_total: MemoryFigures
    configured_bytes: int | None = None  # a VM's memory, set aside
    tcg_cache_pss_bytes: int | None = None
    pss_without_tcg_cache_bytes: int | None = None
    tcg_cache_basis: str | None = None
    tcg_cache_limit_bytes: int | None = None


class Image(Record):
    """What the side starts from: its content (unpacked) and what storing it costs."""

    ref: str
    content_bytes: int | None = None
    content_parts: dict[str, int] | None = None
    content_method: str | None = None
    stored_bytes: int | None = None
    stored_parts: dict[str, int] | None = None
    stored_method: str | None = None
    image_bytes: int | None = None
    layers: int | None = None
    disk_bytes: int | None = None
    disk_file_bytes: int | None = None
    disk_virtual_bytes: int | None = None
    kernel_bytes: int | None = None
    initramfs_bytes: int | None = None
    vm_image_bytes: int | None = None
    fs_used_bytes: int | None = None
    total_bytes: int | None = None  # explorer 0.1's one figure: the image as its engine keeps it
    # results saved before sizes came as content and stored: that one figure, and what it was
    one_size_bytes: int | None = None
    one_size_method: str | None = None


class Timeline(Record):
    """Whether every start's milestones happened in an order they can happen in."""

    ok: bool
    order: list[list[str]] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class Startup(Record):
    """The side's starts: each start's milestones (seconds from the create call), and their spread."""

    milestones: list[str]
    repeats: list[dict[str, float]]  # milestone_s -> seconds, per start
    summary: dict[str, Spread]  # milestone_s -> its spread over the starts
    timeline: Timeline | None = None

    @property
    def ready(self) -> Spread | None:
        """Create to ready over the starts (None: no start measured it)."""
        return self.summary.get("ready_s")
