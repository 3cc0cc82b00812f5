"""The inside probe's documents, typed (issue 31): what explorer-inside prints where a workload runs
(ProbeDocument), and the classified, host-compared view a result keeps of it (InsideView, and the
runs of one side, InsideRow).

Part of the result document's models (a side's `inside`). Every model is strict and closed (no coercion, no unknown field): numbers
are numbers, and a field that may be absent says so with `| None`. The probe's own document is
parsed once, at the edge (explorer/probes/inside/run.py), and trusted past it.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import ConfigDict, Field, model_validator

from explorer.result.base import Record

INSIDE_FORMAT: Literal["explorer-inside/1"] = "explorer-inside/1"  # what the probe prints; the view keeps the same name

V = TypeVar("V")


class _Strict(Record):
    """A record of the result document (strict, closed), frozen: a probe's answer is not edited."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------- what the probe prints


class Fact(_Strict, Generic[V]):
    """One fact as read where the probe ran: its value (None when it could not be read: `error`
    says why, an absent file being a value too), how it was read, and from which file."""

    method: str
    value: V | None
    source: str | None = None
    error: str | None = None


class Interface(_Strict):
    name: str
    loopback: bool


class HostPathMount(_Strict):
    """A mount that shows a host path: its root field (the part of its filesystem mounted here) is a
    path other than "/" (a bind mount, e.g. Docker's /etc/hosts from /var/lib/docker/containers/ID),
    its source is a path outside /dev, or its options name paths (overlay's lowerdir=...)."""

    mount_point: str
    root: str
    fstype: str
    source: str
    shows: list[Literal["root", "source", "options"]]
    path_options: str


class Mounts(_Strict):
    count: int
    host_paths: list[HostPathMount]  # the first 64
    host_path_count: int
    truncated: bool


class Writable(_Strict):
    """access(W_OK) and the mount's read-only flag; writable only when both allow it (nothing is written)."""

    path: str
    access_w_ok: bool
    access_errno: str | None
    read_only_mount: bool
    writable: bool


class BlockDevice(_Strict):
    name: str
    major: int
    minor: int


class KernelLog(_Strict):
    syslog_size_bytes: int | None  # syslog(SYSLOG_ACTION_SIZE_BUFFER); None: refused (syslog_errno)
    syslog_errno: str | None
    kmsg_readable: bool  # /dev/kmsg opened read-only (and closed at once)
    kmsg_errno: str | None


class Kallsyms(_Strict):
    lines_read: int
    nonzero_addresses: bool


class Capabilities(_Strict):
    effective: str  # 16 hex digits, bit N = capability N
    permitted: str
    bounding: str


class Seccomp(_Strict):
    mode: int  # 0 disabled, 1 strict, 2 filter
    filters: int | None
    no_new_privs: bool | None


class Facts(_Strict):
    """What the probe saw of the machine it ran on. The cgroup limits are the raw text of the tightest
    level ("max", "max 100000", "-1 100000", "9223372036854771712"); explorer reads them (limits())."""

    kernel_release: Fact[str]
    kernel_version: Fact[str]
    machine: Fact[str]
    hostname: Fact[str]
    boot_id: Fact[str]
    mem_total_bytes: Fact[int]
    cpus_affinity: Fact[int]
    cpus_online: Fact[int]
    cpus_online_list: Fact[str]
    memory_limit: Fact[str]
    cpu_limit: Fact[str]
    uptime_s: Fact[float]
    net_interfaces: Fact[list[Interface]]
    processes_visible: Fact[int]
    pid1_comm: Fact[str]
    mounts: Fact[Mounts]
    proc_sys_writable: Fact[Writable]
    sys_writable: Fact[Writable]
    block_devices: Fact[list[BlockDevice]]
    kernel_log: Fact[KernelLog]
    kallsyms: Fact[Kallsyms]
    namespaces: Fact[dict[str, str | None]]
    capabilities: Fact[Capabilities]
    seccomp: Fact[Seccomp]
    uid_map: Fact[str]


class RequestedUser(_Strict):
    uid: int
    gid: int


class User(_Strict):
    """Who the probe ran as: what was asked (--uid/--gid; None: as started) and whether it became that
    user; a drop that failed is an error here, and then nothing was probed."""

    requested: RequestedUser | None
    assumed: bool
    error: str | None
    uid: int
    euid: int
    suid: int
    gid: int
    egid: int
    sgid: int
    groups: list[int]


class RawOperation(_Strict):
    """One escape-relevant call as the probe made it (in a child that exited at once), with the
    kernel's raw answer: ret and errno, the signal that ended the child, or why it was not made."""

    id: str
    syscalls: list[str]
    call: str
    harmless: str
    ret: int | None
    errno: int | None
    errno_name: str | None
    signal: int | None
    skipped: str | None


class ProbeDocument(_Strict):
    """explorer-inside's stdout: one JSON document."""

    probe: Literal["explorer-inside/1"]
    pid: int
    user: User
    facts: Facts | None
    operations: list[RawOperation] | None
    elapsed_ms: float

    @model_validator(mode="after")
    def _probed_only_as_asked(self) -> ProbeDocument:
        probed = self.facts is not None and self.operations is not None
        if probed != self.user.assumed:
            raise ValueError("facts and operations are present exactly when the user was assumed")
        return self


# ---------------------------------------------------------------- the view a result keeps

# blocked: refused (EPERM/EACCES, a filter's ENOSYS where the host has the call, a KILL by SIGSYS);
# reachable: the kernel checked the arguments; succeeded: made in a child that exited at once;
# absent: ENOSYS, the kernel that answered has no such call (and the host's has none either);
# skipped: not made (the probe says why); unclear: an answer none of the above explains.
Outcome = Literal["blocked", "reachable", "succeeded", "absent", "skipped", "unclear"]
OUTCOMES: tuple[Outcome, ...] = ("blocked", "reachable", "succeeded", "absent", "skipped", "unclear")
# permission: a caller without the capability is refused before the harmless argument fails, so
# "reachable" means the caller holds it; filter: the argument fails first, for anyone, so the answer
# says only whether the call reached the kernel's code (no filter stopped it)
Tells = Literal["permission", "filter"]


class Compared(_Strict, Generic[V]):
    """A fact beside the host's own value, read by the same probe run natively as the host's root at
    the same moment. same_as_host is None when the two cannot be compared (`why`)."""

    value: V | None
    host_value: V | None
    method: str
    source: str | None
    error: str | None
    rule: str  # how the two were compared
    same_as_host: bool | None
    why: str | None = None


class ComparedFacts(_Strict):
    kernel_release: Compared[str]
    kernel_version: Compared[str]
    machine: Compared[str]
    hostname: Compared[str]
    boot_id: Compared[str]
    mem_total_bytes: Compared[int]
    cpus_affinity: Compared[int]
    cpus_online: Compared[int]
    cpus_online_list: Compared[str]
    memory_limit: Compared[str]
    cpu_limit: Compared[str]
    uptime_s: Compared[float]
    net_interfaces: Compared[list[Interface]]
    processes_visible: Compared[int]
    pid1_comm: Compared[str]
    mounts: Compared[Mounts]
    proc_sys_writable: Compared[Writable]
    sys_writable: Compared[Writable]
    block_devices: Compared[list[BlockDevice]]
    kernel_log: Compared[KernelLog]
    kallsyms: Compared[Kallsyms]
    namespaces: Compared[dict[str, str | None]]
    capabilities: Compared[Capabilities]
    seccomp: Compared[Seccomp]
    uid_map: Compared[str]


class Operation(_Strict):
    """One call, classified: the raw answer, its outcome and why, what the answer can tell, which
    kernel answered (the caller's word: "host", "gVisor's Sentry", "the guest's own"), and the
    operation's metadata (why it matters, public references)."""

    id: str
    syscalls: list[str]
    call: str
    harmless: str
    ret: int | None
    errno: int | None
    errno_name: str | None
    signal: int | None
    outcome: Outcome
    reason: str
    tells: Tells
    answered_by: str | None
    host_errno_name: str | None  # the host's own answer natively as root, where it was read
    why: str
    references: list[str]
    note: str | None
    engine_versions: str | None = None  # where the answer depends on the engine's version, which answers what


class InsideView(_Strict):
    """One run of the probe where a workload runs, classified and compared with the host."""

    format: Literal["explorer-inside/1"]
    user: User
    answered_by: str | None
    facts: ComparedFacts | None
    operations: list[Operation]
    outcomes: dict[Outcome, int]
    host_reference: str | None  # what the host's values came from
    elapsed_ms: float


class ProbeFailure(_Strict):
    """A run that printed no usable document: why, whether a timeout ended it (and whose)."""

    error: str
    timed_out: bool
    exit_code: int | None
    stderr_tail: str


class InsideRun(_Strict):
    as_user: str  # "root (0:0)", "nobody (65534:65534)", "the workload's user (999:999)"
    wall_s: float
    view: InsideView | None
    failure: ProbeFailure | None

    @model_validator(mode="after")
    def _one_of_view_or_failure(self) -> InsideRun:
        if (self.view is None) == (self.failure is None):
            raise ValueError("a run has either a view or a failure")
        return self


class InsideRow(_Strict):
    """A side's runs of the probe: as the workload's user and as the side's root (the native row: a
    plain host process, as a plain user and as root)."""

    side: str
    runs: list[InsideRun]


# ---------------------------------------------------------------- a side's record of it

FilterClass = Literal["allowed", "conditional", "denied", "unknown"]


class CrossCheck(_Strict):
    """One operation's system call as the host-side seccomp evaluation of the workload's filter
    classes it, beside what the probe met inside: a call the filter denies is never reachable
    inside (agrees False says it was, and is printed); a call the filter allows that the kernel
    refused is a capability's refusal, said so."""

    operation: str
    syscall: str
    filter: FilterClass
    inside: Outcome  # as root inside (the widest reach)
    agrees: bool | None  # None: nothing to compare (the filter's answer depends on the arguments)
    said: str


class InsideSummary(_Strict):
    """The figures the claim reads: how much of the host the workload sees, and how much of the
    host's kernel answers its escape-relevant calls, as its own user and as root inside."""

    answered_by: str  # the host's kernel, gVisor's Sentry, the guest's own kernel
    host_kernel: bool  # the host's kernel answers the workload's calls
    facts_compared: int
    facts_as_host: int  # facts whose value is the host's own (as the workload's user)
    facts_seen: list[str]  # their names
    same_boot_id: bool | None  # the workload's boot_id is the host's: one running kernel
    operations: int
    reached_as_user: int  # reachable or succeeded, as the workload's own user
    blocked_as_user: int
    reached_as_root: int  # as the side's root (UID 0 inside)
    blocked_as_root: int
    host_kernel_reached_as_user: int  # reached and answered by the host's kernel (0 where another answered)
    host_kernel_reached_as_root: int
    reached_names_as_root: list[str]
    disagreements: int  # cross-check rows whose filter and inside answer disagree


class InsideSide(_Strict):
    """The inside probe on one side: how it got in, its runs (as the workload's user, as root
    inside), the cross-check against the host-side seccomp evaluation, and the summary; or why it
    was not measured."""

    available: bool
    reason: str | None = None  # why it was not measured (available False), or a caveat
    delivery: str | None = None  # how the probe reached where the workload runs, and where it went
    answered_by: str
    runs: list[InsideRun] = Field(default_factory=list)
    cross_check: list[CrossCheck] = Field(default_factory=list)
    cross_check_method: str | None = None  # how the filter was read (None: not applicable, and why in reason)
    summary: InsideSummary | None = None
    wall_s: float | None = None  # delivery, runs and removal, with the host's reference taken at the same time
