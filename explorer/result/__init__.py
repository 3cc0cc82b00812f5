"""The result document: the contract between the half that measures (the lifecycle and its plans)
and the half that reads (claims, the report, the page, compare, results).

Defined once, as typed models (pydantic): every part down to its leaves, numbers as numbers,
optional fields said so, maps of data-named entries (sides, system calls, roles) as maps of typed
entries. The shipped JSON Schema (result.schema.json beside explorer/) is generated from these
models (`python -m explorer.result > explorer/result.schema.json`; a test fails when the two
disagree). The lifecycle builds the typed document and writes it; explorer/document.py parses a
kept one once, upgrading older versions first, and every reader gets the typed document.
"""

from __future__ import annotations

from explorer.result.base import Record, Spread, Storage
from explorer.result.claims import ClaimOnSide, FigureValue, JudgedClaim, JudgedPart
from explorer.result.density import DensityFigures, DensityRun, Fit, Guard, Ksm, Removal, Step, Stopped
from explorer.result.load import (
    FilterFigures,
    FioDetail,
    FioJob,
    IoSettings,
    LoadSettings,
    LoadSummary,
    PathLoad,
    PhaseSplit,
    Reach,
    RoleCalls,
    Round,
    RunLoad,
    Seccomp,
    SideLoad,
    Traced,
    TracedProcess,
)
from explorer.result.probes import (
    GuestProcessRecord,
    HostProcess,
    Identity,
    Image,
    Inside,
    Isolation,
    Kernel,
    Memory,
    MemoryFigures,
    Named,
    ProcessCount,
    RoleGroup,
    Startup,
    Timeline,
    Visibility,
)
from explorer.result.run import (
    DensityResult,
    DensitySide,
    Host,
    Phases,
    Result,
    ScenarioRecord,
    SidePhases,
)
from explorer.result.side import EngineFacts, SideRecord, Snapshot, TargetRecord

RESULT = "explorer.result/4"
SCHEMA_VERSION = 4
DENSITY = "explorer.density/1"
# older results a reader upgrades (explorer/document.py says how)
UPGRADABLE = ("explorer.result/1", "explorer.result/2", "explorer.result/3")

__all__ = [
    "DENSITY",
    "RESULT",
    "SCHEMA_VERSION",
    "UPGRADABLE",
    "ClaimOnSide",
    "DensityFigures",
    "DensityResult",
    "DensityRun",
    "DensitySide",
    "EngineFacts",
    "FigureValue",
    "FilterFigures",
    "FioDetail",
    "FioJob",
    "Fit",
    "Guard",
    "GuestProcessRecord",
    "Host",
    "HostProcess",
    "Identity",
    "Image",
    "Inside",
    "IoSettings",
    "Isolation",
    "JudgedClaim",
    "JudgedPart",
    "Kernel",
    "Ksm",
    "LoadSettings",
    "LoadSummary",
    "Memory",
    "MemoryFigures",
    "Named",
    "PathLoad",
    "PhaseSplit",
    "Phases",
    "ProcessCount",
    "Reach",
    "Record",
    "Removal",
    "Result",
    "RoleCalls",
    "RoleGroup",
    "Round",
    "RunLoad",
    "ScenarioRecord",
    "Seccomp",
    "SideLoad",
    "SidePhases",
    "SideRecord",
    "Snapshot",
    "Spread",
    "Startup",
    "Step",
    "Stopped",
    "Storage",
    "TargetRecord",
    "Timeline",
    "Traced",
    "TracedProcess",
    "Visibility",
]
