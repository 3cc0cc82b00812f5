"""Result documents for the output tests, and readers of the pages made from them.

The documents: the saved fixtures, and a six-side document in the
current shape (load, traced rounds, runtime roles, TCG cache, density) built from the recorded
two-side fixture by arithmetic. The six-side one is a *shape* for charts and pages to be drawn
from, not a measurement: its figures are the fixture's, scaled, and nothing reads them as
facts about any host. A measured six-side fixture (fixtures/six-sides.json) joins FIXTURES
when it exists."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from explorer import claims, density_run
from explorer.document import parse_result, upgraded
from explorer.result import RESULT, SCHEMA_VERSION, Result, SideRecord
from explorer.result.validate import validated

FIXTURES_DIR = Path(__file__).parent / "fixtures"
FIXTURES = ["both.json", "vm.json", "container.json", "six-sides.json"]
MIB = 1024 * 1024


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES_DIR / name).read_text())


def typed(result: dict[str, Any] | Result) -> Result:
    """A document as JSON gives it (a fixture, a built one) as every reader gets it: parsed."""
    return result if isinstance(result, Result) else parse_result(result, "the test document")


HEADER = {
    "schema": RESULT,
    "schema_version": SCHEMA_VERSION,
    "host": {"hostname": "h", "kernel_release": "6.1.0", "cpu_cores": 2},
    "scenario": {"name": "redis"},
}


def partial(doc: dict[str, Any]) -> Result:
    """A current result from the parts a test names: the header, and each side's name and title
    (its key) filled in where the test leaves them out."""
    sides = {
        name: {"name": name, "title": name, "kind": "container", **side} for name, side in doc.get("sides", {}).items()
    }
    return typed({**HEADER, **doc, "sides": sides})


def dumped(result: Result) -> Any:
    """A typed document as explorer writes it (JSON, by its schema's field names)."""
    return json.loads(result.model_dump_json(by_alias=True))


def side_record(parts: dict[str, Any], name: str = "s", kind: str = "container") -> SideRecord:
    """A side's record from some of its parts (a test of one reader), as the document holds it."""
    return validated(SideRecord, {"name": name, "kind": kind, "title": name, **parts})


def judged(result: dict[str, Any] | Result) -> Result:
    """The result parsed, with its claims judged, as the CLI renders it."""
    return claims.judged(typed(result))


def _scaled(side: dict[str, Any], factor: float) -> None:
    """Every startup time of a side multiplied by `factor` (its summary too)."""
    startup = side["startup"]
    for repeat in startup["repeats"]:
        for key in repeat:
            repeat[key] = round(repeat[key] * factor, 4)
    for figures in startup["summary"].values():
        for key in ("min", "median", "max", "stdev"):
            figures[key] = round(figures[key] * factor, 4)


def _load(rate: float, roles: dict[str, float], note: str | None = None) -> dict[str, Any]:
    per_op = round(sum(roles.values()), 3)
    load: dict[str, Any] = {
        "status": "ok",
        "summary": {"ops_s": {"median": rate, "min": rate * 0.95, "max": rate * 1.04, "n": 3}},
        "rounds": [
            {"ops": int(rate * 2), "seconds": 2.0, "ops_s": rate, "host_cpu_by_role_s": dict.fromkeys(roles, 0.5)}
            for _ in range(3)
        ],
        "traced": {
            "available": True,
            "method": "perf stat -e raw_syscalls:sys_enter",
            "ops": 100000,
            "per_op": per_op,
            "distinct": 12,
            "syscalls": {"read": 100000, "write": 100000},
            "by_role": {role: {"calls": int(v * 100000), "distinct": 6, "per_op": v} for role, v in roles.items()},
            "processes": [{"pid": 1, "role": role, "seccomp": "filter", "seccomp_filters": 1} for role in roles],
        },
    }
    if note:
        load["note"] = note
    return load


def _vm(base: dict[str, Any], name: str, title: str, color: str, factor: float, memory_mib: int) -> dict[str, Any]:
    side = copy.deepcopy(base)
    side.update(name=name, title=title, color=color)
    _scaled(side, factor)
    mem = side["memory"]
    pss = int(mem["runtime"]["pss_bytes"] * memory_mib / 512)
    mem["runtime"]["pss_bytes"] = mem["host_total"]["pss_bytes"] = pss
    mem["runtime_roles"] = {"VMM": {"rss_bytes": pss, "pss_bytes": pss, "processes": 1}}
    mem["configured_bytes"] = memory_mib * MIB
    mem["tcg_cache_pss_bytes"] = pss // 4
    return side


def six_sides() -> dict[str, Any]:
    """Six sides (two containers, four VMs) in the current shape, from fixtures/both.json."""
    base = upgraded(fixture("both.json"))
    container, vm = base["sides"]["container"], base["sides"]["vm"]
    runc = copy.deepcopy(container)
    runc.update(name="runc", title="runc container")
    gvisor = copy.deepcopy(container)
    gvisor.update(name="gvisor", title="gVisor container", color="#2ca02c", roles=["sandbox", "gofer", "stub", "shim"])
    _scaled(gvisor, 1.5)
    shim = gvisor["visibility"]["runtime_processes"][0]
    gvisor["visibility"].update(visible_on_host=False, workload_processes=[], named_on_host=[])
    gvisor["visibility"]["runtime_processes"] = [
        {**shim, "role": role, "host_pid": shim["host_pid"] + i, "name": "exe" if role != "shim" else shim["name"]}
        for i, role in enumerate(("shim", "sandbox", "gofer", "stub", "stub"))
    ]
    each = container["memory"]["runtime"]["pss_bytes"]
    gvisor["memory"]["workload"] = {"rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0, "processes": 0}
    gvisor["memory"]["runtime_roles"] = {
        role: {"rss_bytes": int(each * k), "pss_bytes": int(each * k), "processes": 1}
        for role, k in (("shim", 1), ("sandbox", 1.7), ("gofer", 1))
    }
    gvisor["memory"]["runtime_roles"]["stub"] = {"rss_bytes": int(each), "pss_bytes": int(each * 0.8), "processes": 2}
    gvisor["memory"]["runtime"]["pss_bytes"] = sum(r["pss_bytes"] for r in gvisor["memory"]["runtime_roles"].values())
    gvisor["memory"]["host_total"]["pss_bytes"] = gvisor["memory"]["runtime"]["pss_bytes"]
    gvisor["kernel"].update(
        guest_release="4.4.0", guest_boot_id=None, same_release=False, shared=False, same_boot_id=None
    )
    sides = {
        "runc": runc,
        "gvisor": gvisor,
        "microvm": _vm(vm, "microvm", "microVM", "#d62728", 0.4, 512),
        "fullvm": _vm(vm, "fullvm", "full-OS VM", "#9467bd", 3.0, 1024),
        "vagrant": _vm(vm, "vagrant", "Vagrant VM", "#8c564b", 4.0, 1024),
        "snapshot": _vm(vm, "snapshot", "restored microVM", "#ff7f0e", 0.06, 512),
    }
    tcg = "under TCG (software emulation) a VM's figures measure the emulator"
    native = 50000.0
    roles = {"runc": {"workload": 2.1, "proxy": 4.2}, "gvisor": {"sandbox": 30.0, "gofer": 0.2, "stub": 19.0}}
    for name, side in sides.items():
        side["accel"] = "tcg" if side["kind"] == "vm" else "native"
        ratio = {"runc": 0.44, "gvisor": 0.05}.get(name, 0.06)
        side["load"] = _load(native * ratio, roles.get(name, {"VMM": 4.6}), tcg if side["kind"] == "vm" else None)
    sides["vagrant"]["load"] = {"status": "failed", "reason": "the workload died under load"}
    result = {**base, "schema": "explorer.result/2", "sides": sides}
    result.pop("upgraded_from", None)
    result["load"] = {
        "settings": {"seconds_per_round": 2, "rounds": 3, "traced_round": True},
        "client": "redis-benchmark",
        "native": _load(native, {"workload": 2.1}),
    }
    for name, count, per in (("runc", 20, 9), ("microvm", 4, 180)):
        steps = [
            {
                "n": n,
                "pss_bytes": n * per * MIB + 30 * MIB,
                "rss_bytes": n * per * MIB + 40 * MIB,
                "uss_bytes": n * per * MIB,
                "processes": n,
                "mem_available_bytes": 20_000 * MIB - int(n * per * 1.2 * MIB),
                "available_drop_bytes": int(n * per * 1.2 * MIB),
                "engine_growth_bytes": n * MIB,
                "tcg_cache_pss_bytes": n * per * MIB // 4,
                "ready_s": [0.3 * per / 9] * (count // 4),
                "step_s": 0.3 * per / 9 * (count // 4),
            }
            for n in range(count // 4, count + 1, count // 4)
        ]
        kind = sides[name]["kind"]
        sides[name]["density"] = {
            "count_asked": count,
            "step": count // 4,
            "stopped": {"by": "count", "reason": "all ran"},
            "steps": steps,
            **density_run.summarize(steps, kind),
        }
    return result


def no_standard_load() -> dict[str, Any]:
    """A result whose scenario names no standard load (a tcp-ready workload): `load` is there,
    its native reference skipped, and no side has figures."""
    result = upgraded(fixture("both.json"))
    reason = "the scenario names no standard load (its readiness, tcp, knows no protocol)"
    result["load"] = {
        "settings": {"seconds_per_round": 2, "rounds": 3, "traced_round": True},
        "client": None,
        "native": {"status": "skipped", "reason": reason},
    }
    for side in result["sides"].values():
        side["load"] = {"status": "skipped", "reason": "the scenario names no standard load"}
    return result


BUILT = {"six-sides (built)": six_sides, "no standard load (built)": no_standard_load}
DOCUMENTS = [*FIXTURES, *BUILT]  # what the output tests are parametrised over


def document(name: str) -> dict[str, Any]:
    """A fixture by file name (a test skips, saying so, where it does not exist yet), or a built one."""
    if name in BUILT:
        return BUILT[name]()
    if not (FIXTURES_DIR / name).exists():
        import pytest  # only here: this module is also read outside pytest (the benchmark)

        pytest.skip(f"fixture {name} is not in tests/unit/fixtures yet")
    return fixture(name)


# ---- reading a page back ------------------------------------------------------------------

NETWORK_REFERENCE = [
    re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", re.IGNORECASE),
    re.compile(r"""url\(\s*["']?\s*(https?:|//)""", re.IGNORECASE),
]
EMBEDDED = re.compile(r'<script type="application/json" id="result">(.*?)</script>', re.DOTALL)


def network_references(page: str) -> list[str]:
    """Every src, href or CSS url() in `page` that names a network address."""
    return [m.group(0) for pattern in NETWORK_REFERENCE for m in pattern.finditer(page)]


def embedded(page: str) -> Any:
    found = EMBEDDED.findall(page)
    assert len(found) == 1, f"{len(found)} embedded documents"
    return json.loads(found[0])


class _Grid(HTMLParser):
    """The verdict words of every row of a page's claims grid (table.grid), cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.depth = 0  # inside table.grid's <tbody>: 1
        self.badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        css = (dict(attrs).get("class") or "").split()
        if tag == "table" and "grid" in css:
            self.depth = -1
        elif tag == "tbody" and self.depth == -1:
            self.depth = 1
        elif tag == "tr" and self.depth == 1:
            self.rows.append([])
        elif tag == "span" and "badge" in css and self.depth == 1:
            self.badge = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self.badge = False
        elif tag == "table":
            self.depth = 0

    def handle_data(self, data: str) -> None:
        if self.badge:
            self.rows[-1][-1] += data


def grid_verdicts(page: str) -> list[list[str]]:
    """Each grid row's verdicts, without their marks ("✓ reproduced" -> "reproduced")."""
    parser = _Grid()
    parser.feed(page)
    return [[text.strip().split(" ", 1)[1] for text in row] for row in parser.rows]


def expected_grid(result: Result) -> list[list[str]]:
    """What the grid must show: per claim, each side's verdict (not measured where it has none)."""
    return [
        [side.verdict if (side := claim.sides.get(name)) else "not measured" for name in result.sides]
        for claim in result.claims
    ]
