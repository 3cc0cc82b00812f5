"""The result document: what every reader of a saved result (claims, report, compare, plot)
needs to know about its sides, read from the document itself, never from the registry.

Results of explorer.result/1 had exactly two sides, named `container` and `vm`, and did not
record kinds, titles or roles: `upgraded` fills them in as that version's sides were.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

CURRENT = "explorer.result/2"
READABLE = ("explorer.result/1", CURRENT)
# explorer.result/1's two sides, as the registry would describe them.
_V1_SIDES: dict[str, dict[str, Any]] = {
    "container": {"name": "container", "kind": "container", "title": "container", "roles": ["shim"],
                  "color": "#1f77b4"},
    "vm": {"name": "vm", "kind": "vm", "title": "VM", "roles": ["VMM"], "color": "#d62728"},
}
_V1_ROLE = {"container": "shim", "vm": "VMM"}


def upgraded(result: dict[str, Any]) -> dict[str, Any]:
    """`result` as the current version writes it (a copy where anything had to change)."""
    if result.get("schema") != "explorer.result/1":
        return result
    result = copy.deepcopy(result)
    for name, side in result.get("sides", {}).items():
        for key, value in _V1_SIDES.get(name, {"name": name, "kind": None, "title": name, "roles": []}).items():
            side.setdefault(key, value)
        _fill_v2_figures(side, _V1_ROLE.get(name, "runtime"))
    result["upgraded_from"] = "explorer.result/1"
    return result


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
        names = set(vis.get("process_names", []))
        others = Counter(p["name"] for p in inside.get("processes", []) if not p["kernel_thread"] and p["name"] not in names)
        inside["os_process_count"] = sum(others.values())
        inside["os_processes"] = [{"name": n, "count": c} for n, c in sorted(others.items())]
    kernel = side.get("kernel")
    if isinstance(kernel, dict) and kernel.get("available") and "basis" not in kernel:
        kernel["basis"] = "boot_id" if kernel.get("same_boot_id") is not None else None


def side_title(side: dict[str, Any], name: str) -> str:
    return str(side.get("title") or name)


def side_color(side: dict[str, Any]) -> str:
    return str(side.get("color") or "gray")
