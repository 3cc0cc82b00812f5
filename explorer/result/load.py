"""The standard load's record (explorer/load/): per side and for the native reference, each path's
measured rounds and their spread, the traced round's host system calls by role, and the seccomp
filters each role runs under. A figure's meaning is the client's (ops are SET+GET requests for
redis-benchmark, transactions for pgbench, requests for wrk, I/Os for fio)."""

from __future__ import annotations

from pydantic import Field

from explorer.result.base import Record, Spread, Storage


class FioJob(Record):
    """One fio job of the standard I/O load, from fio's own JSON."""

    rw: str
    bs: str
    ios: int
    runtime_ms: int
    iops: float
    bw_kib_s: int
    p50_ms: float | None = None
    p99_ms: float | None = None


class FioDetail(Record):
    direct: bool
    jobs: dict[str, FioJob]


class Round(Record):
    """One measured (or traced) round of the client, with the host CPU it cost by role."""

    ops: int
    seconds: float
    ops_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_avg_ms: float | None = None
    # redis-benchmark: requests/s per test (SET, GET); wrk: {non_2xx_3xx}; pgbench: {}; fio: its jobs
    detail: FioDetail | dict[str, float] = Field(default_factory=dict)
    host_cpu_s: float | None = None
    host_cpu_by_role_s: dict[str, float] = Field(default_factory=dict)
    host_cpu_s_per_1k_ops: float | None = None
    client_cpu_s: float | None = None  # None: the client ran inside the guest
    argv: list[str] = Field(default_factory=list)


class Calibration(Record):
    argv: list[str]
    ops_s: float
    seconds: float


class Argv(Record):
    init: list[str] | None = None  # the client's preparation as run (pgbench -i, fio's layout)
    round: list[str]


class LoadSummary(Record):
    """Median and spread of each figure over the measured rounds (absent: no round had it)."""

    ops_s: Spread | None = None
    p50_ms: Spread | None = None
    p99_ms: Spread | None = None
    latency_avg_ms: Spread | None = None
    host_cpu_s_per_1k_ops: Spread | None = None
    client_cpu_s: Spread | None = None


class RoleCalls(Record):
    """One role's host system calls in the traced round."""

    calls: int
    distinct: int
    top: list[tuple[str, int]] = Field(default_factory=list)
    syscalls: dict[str, int] = Field(default_factory=dict)
    unnamed_calls: int | None = None
    per_op: float | None = None
    idle_calls_s: float | None = None
    kvm_exits: int | None = None  # the VMM's VM exits in the round, under KVM


class TracedProcess(Record):
    pid: int
    role: str
    name: str | None = None
    seccomp: str | None = None
    seccomp_filters: int | None = None


class Traced(Record):
    """The traced round: every host system call of the side's processes, by role."""

    available: bool
    reason: str | None = None
    ops: int | None = None
    ops_s_while_counted: float | None = None
    calls: int | None = None
    distinct: int | None = None
    syscalls: dict[str, int] = Field(default_factory=dict)
    by_role: dict[str, RoleCalls] = Field(default_factory=dict)
    unnamed_calls: int | None = None
    window_s: float | None = None
    idle_window_s: float | None = None
    idle_calls_s: float | None = None
    per_op: float | None = None
    argv: list[str] | None = None
    method: str | None = None
    named: list[str] | None = None
    narrowing: str | None = None
    processes: list[TracedProcess] = Field(default_factory=list)


class FilterFigures(Record):
    """The seccomp filters of some processes, evaluated for every system call of the host's
    architecture: how many each allows, allows on conditions of the arguments, denies."""

    mode: str | None = None
    filters: int | None = None
    processes: int
    read: bool
    reason: str | None = None
    allowed: int | None = None
    conditional: int | None = None
    denied: int | None = None
    total: int | None = None
    used: int | None = None  # distinct calls the role(s) made in the traced round


class Reach(FilterFigures):
    roles: list[str] = Field(default_factory=list)  # the roles whose calls the host's kernel serves


class Seccomp(Record):
    available: bool
    reason: str | None = None
    method: str | None = None
    arch: str | None = None
    calls: int | None = None
    by_role: dict[str, FilterFigures] = Field(default_factory=dict)
    reach: Reach | None = None


class IoSettings(Record):
    """The standard I/O load's job files, and whether O_DIRECT held."""

    job_file: str
    init_job_file: str
    direct: bool
    direct_refused: str | None = None
    page_cache_effect: str | None = None


class PhaseSplit(Record):
    """Where a load phase's time went, in seconds, against what its rounds and idle window need."""

    prepare_s: float | None = None
    calibration_s: float | None = None
    measured_rounds_s: float | None = None
    idle_window_s: float | None = None
    discovery_s: float | None = None
    traced_rounds_s: float | None = None
    perf_start_s: float | None = None
    perf_stop_s: float | None = None
    keeper_s: float | None = None
    other_s: float | None = None
    total_s: float
    needed_s: float | None = None
    ratio: float | None = None  # total / needed (None: nothing was needed)


class PathLoad(Record):
    """One path's load: how the client reached the workload, and what it measured."""

    status: str  # ok | skipped | failed | not measured
    reason: str | None = None
    logs: str | None = None
    description: str | None = None
    endpoint: str | None = None
    prefix: list[str] = Field(default_factory=list)
    relay: str | None = None
    inside: bool | None = None  # the client ran inside the guest
    calibration: list[Calibration] = Field(default_factory=list)
    argv: Argv | None = None
    rounds: list[Round] = Field(default_factory=list)
    summary: LoadSummary | None = None
    traced: Traced | None = None
    seccomp: Seccomp | None = None


class SideLoad(PathLoad):
    """A side's (or the native reference's) load: the client, then the first path's figures at
    the top, every path's in `paths`, and where the load phase's time went."""

    client: str | None = None
    kind: str | None = None
    params: dict[str, int | bool | str] = Field(default_factory=dict)
    seconds_per_round: float | None = None
    path: str | None = None  # the first path's name
    paths: dict[str, PathLoad] = Field(default_factory=dict)
    phase_s: float | None = None
    phase_split: PhaseSplit | None = None
    storage: Storage | None = None
    io: IoSettings | None = None
    note: str | None = None
    how: str | None = None  # the native reference: what it is, in words


class LoadSettings(Record):
    seconds_per_round: float
    rounds: int
    traced_round: bool
    paths: str | None = None  # every path a side offers, or each side's first (absent before version 3)


class RunLoad(Record):
    """The run's `load`: its settings, the client, and the native reference."""

    settings: LoadSettings | None = None
    client: str | None = None
    native: SideLoad
