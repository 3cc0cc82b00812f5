"""The documents explorer writes, read back: a run's result and a density result, each parsed
once into its typed model (explorer/result/), older versions upgraded first. A document that does
not fit is a UsageError (exit 2) naming the field, what was expected there and what was found;
every reader past this point gets the typed document and reads it by attribute.

Results of explorer.result/1 had exactly two sides, named `container` and `vm`, and did not
record kinds, titles or roles: `upgraded` fills them in as that version's sides were. Results of
version 3 and older kept their engines' state (a PID, a port, a console file) beside the record:
an upgrade leaves it out, as version 4 writes none.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

from explorer import __version__
from explorer.errors import UsageError
from explorer.result import (
    DENSITY,
    RESULT,
    SCHEMA_VERSION,
    UPGRADABLE,
    DensityFigures,
    DensityResult,
    DensityRun,
    Record,
    Result,
    SideRecord,
)
from explorer.result.validate import Unfit, validated

CURRENT = RESULT
READABLE = (*UPGRADABLE, CURRENT)
SAVE_HINT = "explorer run NAME --output FILE saves a result"
DENSITY_HINT = "explorer density NAME --output FILE saves one"
UNFIT_HINT = "a document written by hand, by another tool or damaged; measure again, or correct the field named"
SHOWN_ERRORS = 5
M = TypeVar("M", bound=Record)


def load_result(path: str | Path) -> Result:
    """The result saved at `path`, parsed and checked; UsageError (exit 2) saying what is wrong."""
    raw = _read(path, SAVE_HINT, "result")
    if not isinstance(raw, dict) or "schema" not in raw:
        raise UsageError(f"{path} is not an explorer result (it has no 'schema' field)", hint=SAVE_HINT)
    if raw["schema"] not in READABLE:
        raise UsageError(
            f"{path} is a {raw['schema']!r} document; explorer {__version__} reads {', '.join(map(str, READABLE))}",
            hint="render it with the explorer version that wrote it, or measure again",
        )
    return parse_result(raw, str(path))


def parse_result(raw: dict[str, Any], source: str = "the result") -> Result:
    """A result document (as JSON gives it) as the typed model, older versions upgraded first."""
    return parsed(Result, upgraded(raw), source, RESULT)


def load_density(path: str | Path) -> DensityResult:
    """A saved density document, parsed and checked; UsageError (exit 2) saying what is wrong."""
    raw = _read(path, DENSITY_HINT, "density")
    if not isinstance(raw, dict) or raw.get("schema") != DENSITY:
        found = raw.get("schema") if isinstance(raw, dict) else None
        raise UsageError(f"{path} is not a density result ({found!r}, expected {DENSITY!r})", hint=DENSITY_HINT)
    return parsed(DensityResult, raw, str(path), DENSITY)


def parsed(model: type[M], raw: Any, source: str, schema: str) -> M:
    """`raw` validated into `model` as JSON would be (a tuple is a list); UsageError naming each
    field that does not fit (at most a few), what was expected there and what was found."""
    try:
        return validated(model, raw)
    except Unfit as exc:
        wrong = exc.problems
        more = f" (and {len(wrong) - SHOWN_ERRORS} more)" if len(wrong) > SHOWN_ERRORS else ""
        raise UsageError(
            f"{source} does not fit the {schema} schema: " + "; ".join(wrong[:SHOWN_ERRORS]) + more, hint=UNFIT_HINT
        ) from None


def _read(path: str | Path, hint: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no such {what} file: {path}", hint=hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint=hint) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})", hint=hint) from None


# ---- density into a run ----------------------------------------------------------------------------


def merge_density(result: Result, density: DensityResult) -> Result:
    """The run result with each side's density figures in `sides.<name>.density` (for the sides
    both measured), where claim 7 reads them, and the density run recorded in `density_runs`."""
    sides = dict(result.sides)
    for name, side in density.sides.items():
        if name in sides:
            figures = DensityFigures.model_validate(side.model_dump(include=set(DensityFigures.model_fields)))
            sides[name] = sides[name].model_copy(update={"density": figures})
    run = DensityRun(
        run_id=density.run_id,
        started_at=density.started_at,
        guard=density.guard,
        sides=[n for n in density.sides if n in result.sides],
    )
    return result.model_copy(update={"sides": sides, "density_runs": [*result.density_runs, run]})


# ---- older versions -----------------------------------------------------------------------------

# explorer.result/1's two sides, as the registry would describe them.
_V1_SIDES: dict[str, dict[str, Any]] = {
    "container": {
        "name": "container",
        "kind": "container",
        "title": "container",
        "roles": ["shim"],
        "color": "#1f77b4",
    },
    "vm": {"name": "vm", "kind": "vm", "title": "VM", "roles": ["VMM"], "color": "#d62728"},
}
_V1_ROLE = {"container": "shim", "vm": "VMM"}
# what explorer.result/3 and older kept in a side's `target` for its engine, not for a reader
ENGINE_STATE = (
    "process_names",
    "workload_port",
    "init_pid",
    "host_port",
    "console",
    "qemu_pid",
    "vagrant_cwd",
    "nspawn_pid",
    "proxy_pid",
    "leader_pid",
    "workdir",
    "service",
    "accel",
)


def upgraded(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (a result document as JSON gives it) as the current version writes it: a copy where
    anything had to change. What is not an older version's known shape is left for the model to
    judge."""
    version = raw.get("schema")
    if version not in UPGRADABLE:
        return raw
    raw = copy.deepcopy(raw)
    raw["upgraded_from"], raw["schema"], raw["schema_version"] = version, CURRENT, SCHEMA_VERSION
    raw.pop("claims", None)  # judged again by whoever reads it, with the claims it knows
    sides = raw.get("sides")
    for name, side in sides.items() if isinstance(sides, dict) else []:
        if not isinstance(side, dict):
            continue
        if version == "explorer.result/1":
            for key, value in _V1_SIDES.get(name, {"name": name, "kind": None, "title": name, "roles": []}).items():
                side.setdefault(key, value)
            _fill_v2_figures(side, _V1_ROLE.get(name, "runtime"))
        _name_one_size(side)
        _record_only(side)
    return raw


def _record_only(side: dict[str, Any]) -> None:
    """A side's target as version 4 keeps it: the record, without its engine's state."""
    target = side.get("target")
    if not isinstance(target, dict):
        return
    if isinstance(target.get("accel_reason"), str):
        side.setdefault("accel_reason", target["accel_reason"])
    target.pop("accel_reason", None)
    for key in ENGINE_STATE:
        target.pop(key, None)
    snapshot = target.get("snapshot")
    if isinstance(snapshot, dict):
        snapshot.pop("saved_at", None)  # a monotonic clock reading of the host that saved it


def _name_one_size(side: dict[str, Any]) -> None:
    """Results saved before sizes came as content and stored have one figure per side: the
    image as its engine keeps it. A container's is Docker's Size, its content; a VM's was the
    qcow2 as stored plus kernel and initramfs, which is neither, so it is shown as what it was."""
    image = side.get("image")
    if not isinstance(image, dict) or "content_bytes" in image:
        return
    if side.get("kind") == "container" and image.get("image_bytes") is not None:
        image["content_bytes"] = image["image_bytes"]
        image["content_method"] = "Docker's Size (docker image inspect), as an older explorer recorded it"
    elif image.get("total_bytes") is not None:
        image["one_size_bytes"] = image["total_bytes"]
        image["one_size_method"] = "saved by an older explorer: the qcow2 as stored + kernel + initramfs"


def _fill_v2_figures(side: dict[str, Any], role: str) -> None:
    """The figures version 2 derives from what version 1 already measured."""
    vis = side.get("visibility")
    if isinstance(vis, dict) and isinstance(vis.get("runtime_processes"), list):
        procs = [p for p in vis["runtime_processes"] if isinstance(p, dict)]
        for proc in procs:
            proc.setdefault("role", role)
        pids = [str(p.get("host_pid")) for p in procs]
        vis.setdefault("runtime_by_role", [{"role": role, "count": len(pids), "pids": " ".join(pids)}] if pids else [])
    inside = vis.get("inside") if isinstance(vis, dict) else None
    if isinstance(inside, dict) and inside.get("available") and "os_process_count" not in inside:
        assert isinstance(vis, dict)  # inside was read from it
        names = set(vis.get("process_names") or [])
        listed = [p for p in inside.get("processes") or [] if isinstance(p, dict)]
        others = Counter(p.get("name") for p in listed if not p.get("kernel_thread") and p.get("name") not in names)
        inside["os_process_count"] = sum(others.values())
        inside["os_processes"] = [{"name": n, "count": c} for n, c in sorted(others.items(), key=lambda i: str(i[0]))]
    kernel = side.get("kernel")
    if isinstance(kernel, dict) and kernel.get("available") and "basis" not in kernel:
        kernel["basis"] = "boot_id" if kernel.get("same_boot_id") is not None else None


# ---- what every reader asks of a side ---------------------------------------------------------


def side_title(side: SideRecord, name: str) -> str:
    return side.title or name


def side_color(side: SideRecord) -> str:
    return side.color or "gray"


__all__ = [
    "CURRENT",
    "READABLE",
    "load_density",
    "load_result",
    "merge_density",
    "parse_result",
    "parsed",
    "side_color",
    "side_title",
    "upgraded",
]
