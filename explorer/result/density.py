"""A density run's record (explorer/density_run.py): many instances of a side running at once,
their host memory measured after each step and fitted against N. A density document has one
such side per side measured; a run result merges a side's figures into `sides.<name>.density`,
where claim 7 reads the measured marginal cost."""

from __future__ import annotations

from pydantic import Field

from explorer.result.base import Record


class Ksm(Record):
    """KSM's state when a step was measured (available False: the kernel has no KSM)."""

    available: bool
    run: int | None = None
    pages_shared: int | None = None
    pages_sharing: int | None = None
    pages_unshared: int | None = None
    full_scans: int | None = None
    settled: bool | None = None
    waited_s: float | None = None
    why: str | None = None


class Step(Record):
    """The host's figures with `n` instances running."""

    n: int
    ready_s: list[float]  # each instance started in this step: seconds from its create to ready
    step_s: float
    pss_bytes: int
    rss_bytes: int
    uss_bytes: int
    processes: int
    mem_available_bytes: int
    available_drop_bytes: int
    engine_growth: dict[str, int] = Field(default_factory=dict)
    engine_growth_bytes: int
    tcg_cache_pss_bytes: int | None = None
    ksm: Ksm | None = None
    measure_s: float | None = None


class Fit(Record):
    """y = slope * N + intercept by least squares, and the RMS of its residuals."""

    slope: float
    intercept: float
    residual_rms: float
    points: int


class Stopped(Record):
    by: str  # count | engine | memory guard | error
    reason: str


class Removal(Record):
    destroyed: int
    leftovers_removed: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    remove_s: float


class DensityFigures(Record):
    """What a density run measured of one side (also what a run result keeps of it)."""

    backend: str | None = None
    accel: str | None = None
    count_asked: int | None = None
    step: int | None = None
    stopped: Stopped | None = None
    removal: Removal | None = None
    steps: list[Step] = Field(default_factory=list)
    method: str = "measured"
    count: int
    points: int | None = None
    fit_basis: str | None = None
    marginal_pss_bytes: int | None = None
    fixed_pss_bytes: int | None = None
    residual_pss_bytes: int | None = None
    marginal_available_bytes: int | None = None
    fixed_available_bytes: int | None = None
    residual_available_bytes: int | None = None
    marginal_engine_bytes: int | None = None
    fixed_engine_bytes: int | None = None
    residual_engine_bytes: int | None = None
    marginal_tcg_cache_bytes: int | None = None
    fixed_tcg_cache_bytes: int | None = None
    residual_tcg_cache_bytes: int | None = None
    marginal_host_bytes: int | None = None
    marginal_pss_without_tcg_cache_bytes: int | None = None
    ready_first_s: float | None = None
    ready_last_s: float | None = None
    ready_slope_s: float | None = None
    start_rate_per_s: float | None = None
    fits: dict[str, Fit] = Field(default_factory=dict)


class Guard(Record):
    """The memory floor a density run keeps MemAvailable above."""

    start_available_bytes: int
    floor_bytes: int
    floor_fraction: float
    safety: float | None = None


class DensityRun(Record):
    """A density result merged into a run result: which, and for which sides."""

    run_id: str | None = None
    started_at: str | None = None
    guard: Guard | None = None
    sides: list[str] = Field(default_factory=list)
