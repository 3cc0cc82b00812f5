"""The documents explorer writes: a run's result and a density result. Loading them back
(checked, upgraded from older versions), and what every reader (claims, report, compare,
plot) needs to know about their sides, read from the document itself, never the registry.

Results of explorer.result/1 had exactly two sides, named `container` and `vm`, and did not
record kinds, titles or roles: `upgraded` fills them in as that version's sides were.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema

from explorer import __version__
from explorer.errors import UsageError
from explorer.result import DENSITY, RESULT, SCHEMA_VERSION, UPGRADABLE, problems

CURRENT = RESULT_SCHEMA = RESULT
READABLE = (*UPGRADABLE, CURRENT)
DENSITY_SCHEMA = DENSITY
SAVE_HINT = "explorer run NAME --output FILE saves a result"
DENSITY_HINT = "explorer density NAME --output FILE saves one"
# What rendering a result relies on; the rest is read with defaults.
SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "host", "scenario", "sides"],
    "properties": {
        "host": {"type": "object", "required": ["hostname", "kernel_release", "cpu_cores"]},
        "scenario": {"type": "object", "required": ["name"]},
        "sides": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}


def load_result(path: str | Path) -> dict[str, Any]:
    """The result saved at `path`; a UsageError (exit 2) saying what is wrong otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no such result file: {path}", hint=SAVE_HINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint=SAVE_HINT) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})", hint=SAVE_HINT) from None
    if not isinstance(doc, dict) or "schema" not in doc:
        raise UsageError(f"{path} is not an explorer result (it has no 'schema' field)", hint=SAVE_HINT)
    if doc["schema"] not in READABLE:
        raise UsageError(
            f"{path} is a {doc['schema']!r} document; explorer {__version__} reads {', '.join(READABLE)}",
            hint="render it with the explorer version that wrote it, or measure again",
        )
    missing = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(SHAPE).iter_errors(doc)
    ]
    if missing:
        raise UsageError(f"{path} is an incomplete explorer result: " + "; ".join(missing), hint=SAVE_HINT)
    doc = upgraded(doc)
    wrong = problems(doc)
    if wrong:
        raise UsageError(
            f"{path} does not fit the {CURRENT} schema: " + "; ".join(wrong),
            hint="a document written by hand or by another tool; measure again, or correct the field named",
        )
    return doc


def load_density(path: str | Path) -> dict[str, Any]:
    """A saved density document; UsageError (exit 2) saying what is wrong otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no such density file: {path}", hint=DENSITY_HINT) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path} as JSON: {exc}", hint=DENSITY_HINT) from None
    if not isinstance(doc, dict) or doc.get("schema") != DENSITY_SCHEMA or not isinstance(doc.get("sides"), dict):
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise UsageError(f"{path} is not a density result ({found!r}, expected {DENSITY_SCHEMA!r})", hint=DENSITY_HINT)
    return doc


def merge_density(result: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The run result with each side's density figures in `sides.<name>.density` (for the
    sides both measured), where claim 7 reads them."""
    if doc.get("schema") != DENSITY_SCHEMA:
        raise UsageError(
            f"not a density result ({doc.get('schema')!r}, expected {DENSITY_SCHEMA!r})", hint=DENSITY_HINT
        )
    meta = {"name", "kind", "title", "roles", "kernel_roles", "color", "about", "engine", "backend"}
    for name, side in doc["sides"].items():
        if name in result["sides"]:
            result["sides"][name]["density"] = {k: v for k, v in side.items() if k not in meta}
    runs = result.setdefault("density_runs", [])  # one entry per density result merged in
    runs.append(
        {
            "run_id": doc.get("run_id"),
            "started_at": doc.get("started_at"),
            "guard": doc.get("guard"),
            "sides": [n for n in doc["sides"] if n in result["sides"]],
        }
    )
    return result


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


def upgraded(result: dict[str, Any]) -> dict[str, Any]:
    """`result` as the current version writes it (a copy where anything had to change)."""
    v1 = result.get("schema") == "explorer.result/1"
    sides = got if isinstance(got := result.get("sides"), dict) else {}
    one_size = [s for s in sides.values() if isinstance(s.get("image"), dict) and "content_bytes" not in s["image"]]
    if result.get("schema") == CURRENT and not one_size:
        return result
    result = copy.deepcopy(result)
    if result.get("schema") in UPGRADABLE:
        result["upgraded_from"] = result["schema"]
        result["schema"], result["schema_version"] = CURRENT, SCHEMA_VERSION
    for name, side in result.get("sides", {}).items():
        if v1:
            for key, value in _V1_SIDES.get(name, {"name": name, "kind": None, "title": name, "roles": []}).items():
                side.setdefault(key, value)
            _fill_v2_figures(side, _V1_ROLE.get(name, "runtime"))
        _name_one_size(side)
    return result


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
    if isinstance(vis, dict) and "runtime_processes" in vis:
        for proc in vis["runtime_processes"]:
            proc.setdefault("role", role)
        pids = [str(p["host_pid"]) for p in vis["runtime_processes"]]
        vis.setdefault("runtime_by_role", [{"role": role, "count": len(pids), "pids": " ".join(pids)}] if pids else [])
    inside = vis.get("inside") if isinstance(vis, dict) else None
    if isinstance(inside, dict) and inside.get("available") and "os_process_count" not in inside:
        assert isinstance(vis, dict)  # inside was read from it
        names = set(vis.get("process_names", []))
        others = Counter(
            p["name"] for p in inside.get("processes", []) if not p["kernel_thread"] and p["name"] not in names
        )
        inside["os_process_count"] = sum(others.values())
        inside["os_processes"] = [{"name": n, "count": c} for n, c in sorted(others.items())]
    kernel = side.get("kernel")
    if isinstance(kernel, dict) and kernel.get("available") and "basis" not in kernel:
        kernel["basis"] = "boot_id" if kernel.get("same_boot_id") is not None else None


def side_title(side: dict[str, Any], name: str) -> str:
    return str(side.get("title") or name)


def side_color(side: dict[str, Any]) -> str:
    return str(side.get("color") or "gray")
