"""A run's result document (explorer.result/4), and a density run's (explorer.density/2): the
host, the scenario, per side what was measured, the load's native reference, where the time went
and, once judged, the claims."""

from __future__ import annotations

from pydantic import Field

from explorer.result.base import Record
from explorer.result.claims import JudgedClaim
from explorer.result.density import DensityFigures, DensityRun, Guard
from explorer.result.inside import InsideRow
from explorer.result.load import RunLoad
from explorer.result.side import EngineFacts, SideRecord


class Host(Record):
    hostname: str
    kernel_release: str
    cpu_cores: int
    os: str | None = None
    boot_id: str | None = None
    arch: str | None = None
    cpu_model: str | None = None
    memory_bytes: int | None = None
    python: str | None = None
    explorer: str | None = None
    virtualized: bool | None = None


class RecipeRecord(Record):
    suite: str
    packages: list[str]
    command: list[str] = Field(default_factory=list)
    entrypoint: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    files: list[str] = Field(default_factory=list)
    user: str | None = None
    workdir: str | None = None


class Timeouts(Record):
    build_s: float
    ready_s: float
    vm_ready_s: float


class VmSettings(Record):
    memory_mib: int
    vcpus: int
    cpu: str | None = None
    tb_cache_mib: int | None = None


class ScenarioRecord(Record):
    """The scenario as it was run (explorer/scenario.py's to_dict)."""

    name: str
    description: str | None = None
    source: str | None = None
    image: str | None = None
    recipe: RecipeRecord | None = None
    port: int | None = None
    processes: list[str] = Field(default_factory=list)
    ready: str | None = None
    ready_params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    ready_check: str | None = None
    ready_warning: str | None = None
    repeats: int | None = None
    load: dict[str, dict[str, str | int | float | bool]] | None = None  # kind -> its parameters
    load_client: str | None = None
    timeouts: Timeouts | None = None
    vm: VmSettings | None = None


class SidePhases(Record):
    """Where a side's time went, in seconds."""

    prepare_s: float
    measure_s: float
    probes_s: float | None = None
    after_ready_s: float | None = None
    load_s: float | None = None
    destroy_s: float | None = None
    clean_s: float | None = None
    starts_s: float | None = None
    start_s: list[float | None] = Field(default_factory=list)  # each start's seconds to ready


class Phases(Record):
    check_s: float | None = None
    reference_s: float | None = None
    total_s: float | None = None
    sides: dict[str, SidePhases] = Field(default_factory=dict)


class Result(Record):
    """explorer run's result document."""

    schema_: str = Field(alias="schema")
    schema_version: int
    run_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    upgraded_from: str | None = None  # the version an older document was upgraded from, when read
    host: Host
    scenario: ScenarioRecord
    sides: dict[str, SideRecord]
    skipped: dict[str, str] = Field(default_factory=dict)  # side -> why it was not measured
    phases: Phases | None = None
    load: RunLoad | None = None
    inside_native: InsideRow | None = None  # the inside probe as a plain host process: as a plain user, as root
    claims: list[JudgedClaim] = Field(default_factory=list)
    density_runs: list[DensityRun] = Field(default_factory=list)


class DensitySide(DensityFigures):
    """A density document's side: the registry's words for it, then its figures."""

    name: str
    kind: str
    title: str
    roles: list[str] = Field(default_factory=list)
    kernel_roles: list[str] = Field(default_factory=list)
    about: str | None = None
    color: str | None = None
    engine: EngineFacts = Field(default_factory=EngineFacts)


class DensityResult(Record):
    """explorer density's document."""

    schema_: str = Field(alias="schema")
    run_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    host: Host
    scenario: ScenarioRecord
    guard: Guard
    sides: dict[str, DensitySide]
    skipped: dict[str, str] = Field(default_factory=dict)
    phases: Phases | None = None
