"""Density's pure logic, without an engine: the least-squares fit, the memory guard, KSM's
state and settling, the TCG cache split, the step loop on a fake side (everything destroyed
on success, error and interrupt), and claim 7 judged with and without measured figures."""

from __future__ import annotations

import json
import math
import re
import signal
from collections import namedtuple
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from explorer import claims, density_run, document, sides
from explorer.backends.base import Backend
from explorer.cli import main
from explorer.errors import BackendUnavailable, UsageError
from explorer.model import Accel
from explorer.output import density_plot, report
from explorer.output import density_table as density_report
from explorer.probes import ProbeContext, memory
from explorer.probes import host_memory as figures
from explorer.result import DensityResult, Result
from explorer.scenario import from_dict
from tests.unit.documents import typed
from tests.unit.test_runner_fake import (
    FAKE,
    SCENARIO,
    FakeChannel,
    FakeEngine,
    FakeSource,
    assemble,
)

MIB = 1024 * 1024
FIXTURES = Path(__file__).parent / "fixtures"


# ---- the fit ------------------------------------------------------------------------------


def test_fit_of_a_straight_line_is_exact():
    assert density_run.fit([1, 2, 3, 4], [12, 22, 32, 42]) == {
        "slope": 10.0,
        "intercept": 2.0,
        "residual_rms": 0.0,
        "points": 4,
    }


def test_fit_with_scatter_gives_the_least_squares_line_and_its_rms():
    got = density_run.fit([1, 2, 3, 4], [1, 3, 2, 4])
    assert got["slope"] == pytest.approx(0.8) and got["intercept"] == pytest.approx(0.5)
    assert got["residual_rms"] == pytest.approx(math.sqrt(0.45))  # residuals -0.3, 0.9, -0.9, 0.3


def test_fit_of_one_point_goes_through_the_origin():
    assert density_run.fit([2, 2], [10, 10]) == {"slope": 5.0, "intercept": 0.0, "residual_rms": 0.0, "points": 2}
    with pytest.raises(ValueError):
        density_run.fit([], [])


def test_summary_fits_memory_ready_time_and_the_tcg_cache():
    steps = [
        _step(n, pss=n * 10 * MIB + 30 * MIB, drop=n * 12 * MIB, ready=[1.0 + 0.5 * (n - 1)], tcg=n * 4 * MIB)
        for n in (1, 2, 3)
    ]
    out = density_run.summarize(steps, "vm")
    assert (out["marginal_pss_bytes"], out["fixed_pss_bytes"], out["residual_pss_bytes"]) == (10 * MIB, 30 * MIB, 0)
    assert out["marginal_available_bytes"] == 12 * MIB and out["fixed_available_bytes"] == 0
    assert out["marginal_tcg_cache_bytes"] == 4 * MIB and out["marginal_pss_without_tcg_cache_bytes"] == 6 * MIB
    assert out["ready_slope_s"] == 0.5 and out["start_rate_per_s"] == round(3 / 4.5, 3)
    assert (out["count"], out["points"], out["method"], out["fit_basis"]) == (3, 3, "measured", "least squares")


def _step(n: int, pss: int, drop: int, ready: list[float], tcg: int | None = None, engine: int = 0) -> dict[str, Any]:
    step = {
        "n": n,
        "pss_bytes": pss,
        "rss_bytes": pss + n * MIB,
        "uss_bytes": pss - n * MIB,
        "processes": n,
        "mem_available_bytes": 20 * 1024 * MIB - drop,
        "available_drop_bytes": drop,
        "engine_growth_bytes": engine,
        "ready_s": ready,
        "step_s": sum(ready),
        "ksm": {"available": True, "run": 0},
    }
    return step if tcg is None else {**step, "tcg_cache_pss_bytes": tcg}


# ---- the memory guard ---------------------------------------------------------------------


def test_guard_refuses_a_step_that_would_cross_the_floor():
    guard = density_run.Guard(1000 * MIB)  # floor: 250 MiB
    assert guard.floor == 250 * MIB
    assert guard.refuses(400 * MIB, 100 * MIB, 1) is None  # 400 - 1.25 x 100 = 275 >= 250
    why = guard.refuses(400 * MIB, 100 * MIB, 2)  # 400 - 250 = 150 < 250
    assert why is not None and "memory guard: 2 more" in why and "250.0 MiB (25% of 1000.0 MiB" in why


def test_the_next_instance_is_estimated_from_the_largest_marginal_cost_so_far():
    assert density_run.per_instance_estimate([], 64.0) == 64.0
    first = _step(2, pss=20, drop=30, ready=[1, 1])
    assert density_run.per_instance_estimate([first], 64.0) == 15.0  # drop 30 / 2
    second = _step(4, pss=40, drop=80, ready=[1, 1])
    assert density_run.per_instance_estimate([first, second], 64.0) == 25.0  # (80 - 30) / 2 in the last step


# ---- KSM ----------------------------------------------------------------------------------


def test_ksm_parsing_and_absence():
    got = figures.parse_ksm({"run": "1\n", "pages_shared": "10\n", "pages_sharing": "250\n", "full_scans": "3\n"})
    assert got == {"available": True, "run": 1, "pages_shared": 10, "pages_sharing": 250, "full_scans": 3}
    assert figures.parse_ksm({}) == {"available": False}
    assert figures.read_ksm(Path("/nonexistent"))["available"] is False


def test_ksm_not_running_needs_no_wait():
    got = figures.settle_ksm(lambda: {"available": True, "run": 0}, sleep=pytest.fail)
    assert got["settled"] and got["waited_s"] == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_ksm_settles_when_pages_sharing_moves_less_than_5_percent_between_full_scans():
    states = iter([(0, 0), (1, 1000), (1, 1000), (2, 1900), (3, 1950)])  # (full_scans, pages_sharing)
    clock = FakeClock()
    got = figures.settle_ksm(
        lambda: dict(zip(("full_scans", "pages_sharing"), next(states)), run=1), sleep=clock.sleep, clock=clock
    )
    assert got["settled"] and got["pages_sharing"] == 1950 and got["waited_s"] == 4.0


def test_ksm_waiting_is_bounded():
    scans = iter(range(1000))
    clock = FakeClock()
    got = figures.settle_ksm(
        lambda: {"run": 1, "full_scans": (s := next(scans)), "pages_sharing": 100 * 2**s},
        timeout_s=5,
        sleep=clock.sleep,
        clock=clock,
    )
    assert not got["settled"] and got["waited_s"] == 5.0 and "still changing" in got["why"]


# ---- the TCG cache ------------------------------------------------------------------------

Map = namedtuple("Map", "path perms size pss")


def test_tcg_cache_is_the_big_anonymous_rwx_mappings():
    maps = [
        Map("", "rwxp", 128 * MIB, 90 * MIB),
        Map("", "rwxp", 128 * MIB, 40 * MIB),  # the code buffer's regions
        Map("", "rw-p", 512 * MIB, 200 * MIB),  # guest RAM
        Map("/usr/bin/qemu-system-x86_64", "r-xp", 8 * MIB, 3 * MIB),
        Map("[heap]", "rw-p", 4 * MIB, 4 * MIB),
        Map("", "rwxp", 4096, 4096),
    ]  # a small trampoline
    assert memory.tcg_cache_bytes(maps) == 130 * MIB


def test_memory_figures_say_where_there_is_no_tcg_cache():
    ctx = ProbeContext(
        side="microvm",
        kind="vm",
        scenario=SCENARIO,
        artifact=None,
        workload_pids=[],
        runtime_pids={},
        guest=None,
        accel=Accel("kvm", "a test"),
    )
    assert memory.tcg_figures(ctx, 300) == {
        "tcg_cache_pss_bytes": 0,
        "pss_without_tcg_cache_bytes": 300,
        "tcg_cache_basis": "none under kvm",
        "tcg_cache_limit_bytes": None,
    }


# ---- the step loop on a fake side ---------------------------------------------------------


class CountingEngine(FakeEngine):
    """The fake side, counting the instances alive; each costs the host 100 MiB of MemAvailable."""

    live: ClassVar[list[str]] = []

    def create(self, scenario, artifact, run_id, index):
        if self.behaviour.get("unavailable_at") == index:
            raise BackendUnavailable("the fake engine went away")
        self.behaviour["interrupt_in_create"] = self.behaviour.get("interrupt_at") == index
        target = super().create(scenario, artifact, run_id, index)
        self.live.append(target.name)
        return target

    def destroy(self, target):
        super().destroy(target)
        self.live.remove(target.name)


@pytest.fixture
def counting(monkeypatch):
    side = sides.Side(
        "fake",
        "container",
        "fake container",
        f"{__name__}:assemble_counting",
        roles=("shim",),
        about="a test double",
        color="#000000",
        density_count=5,
    )
    monkeypatch.setitem(sides.SIDES, "fake", side)
    CountingEngine.calls, CountingEngine.behaviour, CountingEngine.live = [], {}, []
    monkeypatch.setattr(figures, "mem_available", lambda: 1000 * MIB - 100 * MIB * len(CountingEngine.live))
    monkeypatch.setattr(figures, "engine_daemons", lambda names=(): {})
    return CountingEngine


def assemble_counting(side) -> Backend:
    return Backend(side, FakeSource(), CountingEngine(side), FakeChannel())


def dumped(doc: DensityResult) -> dict[str, Any]:
    """The density document as explorer writes it."""
    return json.loads(doc.model_dump_json(by_alias=True))


def test_steps_until_the_count_then_everything_is_removed(counting):
    doc = dumped(density_run.run(SCENARIO, FAKE, count=5, step=2, ksm_settle_s=0))
    side = doc["sides"]["fake"]
    assert [s["n"] for s in side["steps"]] == [2, 4, 5] and [len(s["ready_s"]) for s in side["steps"]] == [2, 2, 1]
    assert [c for c in counting.calls if c.startswith("create")] == [f"create {i}" for i in range(5)]
    assert counting.live == [] and counting.calls[-1] == "clean" and side["removal"]["destroyed"] == 5
    assert side["stopped"]["by"] == "count" and side["marginal_available_bytes"] == 100 * MIB
    assert doc["schema"] == "explorer.density/1" and side["kind"] == "container" and side["color"] == "#000000"
    assert json.loads(json.dumps(doc)) == doc


def test_the_sides_own_count_is_the_default(counting):
    assert density_run.run(SCENARIO, FAKE, ksm_settle_s=0).sides["fake"].count == 5


def test_the_memory_guard_stops_before_memavailable_crosses_the_floor(counting):
    doc = dumped(density_run.run(SCENARIO, FAKE, count=50, step=1, ksm_settle_s=0))
    side = doc["sides"]["fake"]
    # 100 MiB each, estimated at 125: the 8th would leave 300 - 125 < the 250 MiB floor
    assert side["count"] == 7 and side["stopped"]["by"] == "memory guard"
    assert min(s["mem_available_bytes"] for s in side["steps"]) >= doc["guard"]["floor_bytes"]
    assert counting.live == []


def test_an_instance_that_is_not_ready_stops_the_side_and_everything_is_removed(counting):
    counting.behaviour["silent"] = True  # never answers PING: NotReady after the 2 s timeout
    side = dumped(density_run.run(SCENARIO, FAKE, count=3, step=1, ksm_settle_s=0))["sides"]["fake"]
    assert side["stopped"]["by"] == "error" and "did not answer" in side["stopped"]["reason"]
    assert side["count"] == 0 and counting.live == [] and counting.calls[-1] == "clean"


def test_an_interrupt_mid_step_removes_every_instance(counting):
    counting.behaviour["interrupt_at"] = 3
    with pytest.raises(KeyboardInterrupt):
        density_run.run(SCENARIO, FAKE, count=6, step=2, ksm_settle_s=0)
    assert len([c for c in counting.calls if c.startswith("destroy")]) == 4  # the 4th was created, then removed
    assert counting.live == [] and counting.calls[-1] == "clean"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_engine_that_goes_away_mid_run_still_gets_everything_removed(counting):
    counting.behaviour["unavailable_at"] = 2
    with pytest.raises(BackendUnavailable):
        density_run.run(SCENARIO, FAKE, count=4, step=1, ksm_settle_s=0)
    assert counting.live == [] and counting.calls[-1] == "clean"


def test_count_and_step_must_be_positive():
    with pytest.raises(Exception, match="at least 1"):
        density_run.run(SCENARIO, FAKE, count=0)


def test_a_vm_is_first_estimated_at_its_configured_memory_and_half_again():
    vm = from_dict(
        {
            "name": "v",
            "workload": {"image": "x:1", "port": 1, "processes": ["x"], "ready": "tcp"},
            "vm": {"memory_mib": 512},
        }
    )
    backend = assemble(sides.Side("v", "vm", "v", "x:y", roles=("VMM",), about="-"))
    assert density_run.prior_bytes(backend, vm) == 768 * MIB


# ---- claim 7, with and without measured figures, and the outputs -------------------------


def density_raw() -> dict[str, Any]:
    container = [
        _step(n, pss=n * 8 * MIB + 20 * MIB, drop=n * 10 * MIB, ready=[0.4] * 10, engine=n * MIB) for n in (10, 20)
    ]
    vm = [_step(n, pss=n * 200 * MIB, drop=n * 220 * MIB, ready=[5.0], tcg=n * 60 * MIB) for n in (1, 2)]
    out = {
        "schema": density_run.SCHEMA,
        "run_id": "d1",
        "scenario": {"name": "redis"},
        "host": {"hostname": "h", "kernel_release": "6.1.0", "cpu_cores": 2, "memory_bytes": 24 * 1024 * MIB},
        "guard": {"floor_bytes": 5 * 1024 * MIB, "floor_fraction": 0.25, "start_available_bytes": 20 * 1024 * MIB},
        "sides": {},
    }
    for name, kind, steps in (("container", "container", container), ("vm", "vm", vm)):
        out["sides"][name] = {
            "name": name,
            "kind": kind,
            "title": name,
            "color": "#123456",
            "count_asked": 20,
            "step": 10,
            "stopped": {"by": "count", "reason": "all ran"},
            "steps": steps,
            **density_run.summarize(steps, kind),
        }
    return out


def density_doc() -> DensityResult:
    return document.parsed(DensityResult, density_raw(), "the test's density document", density_run.SCHEMA)


def recorded() -> Result:
    return typed(json.loads((FIXTURES / "both.json").read_text()))


def bin_packing(result: Result) -> dict[str, Any]:
    return next(v.model_dump() for v in claims.judge(result) if v.id == "bin-packing")


def test_claim_7_without_density_says_it_is_extrapolated():
    verdict = bin_packing(recorded())
    assert "extrapolated from one instance" in verdict["sides"]["container"]["evidence"]
    assert "1,002 fit" in verdict["sides"]["container"]["evidence"]
    assert "VM: extrapolated from one instance" in verdict["sides"]["vm"]["evidence"]


def test_claim_7_with_density_names_the_measured_marginal_costs():
    result = document.merge_density(recorded(), density_doc())
    verdict = bin_packing(result)
    text = verdict["sides"]["container"]["evidence"]
    assert "measured: 20 instances, marginal 8.0 MiB each (fit residual 0 B), fixed 20.0 MiB" in text
    assert "engine daemons 1.0 MiB more per instance" in text and "extrapolated" not in text
    assert result.host.memory_bytes is not None
    fits = int((result.host.memory_bytes - 20 * MIB) / (8 * MIB))  # (host - fixed) / marginal
    assert f"{fits:,} fit" in text
    vm = verdict["sides"]["vm"]
    assert "140.0 MiB PSS each, 17.5x container's" in vm["evidence"]  # 200 - 60 MiB of TCG cache
    assert "60.0 MiB of TCG translation cache per instance" in vm["evidence"]
    assert "VM measured: 2 instances, marginal 200.0 MiB each" in vm["evidence"]
    assert verdict["verdict"] == "reproduced"


def test_the_first_operand_takes_the_first_figure_present():
    result = {"side": {"a": 1, "b": 2}}
    assert claims.figure({"first": ["side.x", "side.b", "side.a"]}, result, {}) == 2
    assert claims.figure({"first": ["side.x"], "default": 0}, result, {}) == 0
    with pytest.raises(claims.Missing):
        claims.figure({"first": ["side.x", "side.y"]}, result, {})


def test_load_density_refuses_what_is_not_a_density_result(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"schema": "explorer.result/2", "sides": {}}))
    with pytest.raises(UsageError, match="not a density result"):
        document.load_density(path)


def test_density_outputs_table_markdown_json_and_plot(tmp_path):
    doc = density_doc()
    text = density_report.render(doc, "table")
    assert "container: " in text and "Fits (least squares against N)" in text and "8.0 MiB" in text
    assert "| N " in density_report.render(doc, "markdown")
    assert json.loads(density_report.render(doc, "json")) == dumped(doc)
    assert density_plot.write(doc, tmp_path / "d.png").stat().st_size > 10_000


def test_report_with_density_shows_the_fits_and_judges_claim_7_from_them(tmp_path):
    path = tmp_path / "density.json"
    path.write_text(json.dumps(density_raw()))
    result = CliRunner().invoke(main, ["report", str(FIXTURES / "both.json"), "--density", str(path), "--detail"])
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # the evidence, wrapped to the terminal's width
    assert "Density (many instances running" in result.output and "measured: 20 instances" in words
    bad = CliRunner().invoke(main, ["report", str(FIXTURES / "both.json"), "--density", str(FIXTURES / "vm.json")])
    assert isinstance(bad.exception, UsageError) and "not a density result" in str(bad.exception)


def test_the_time_table_shows_where_a_runs_time_goes():
    raw = json.loads((FIXTURES / "both.json").read_text())
    raw["phases"] = {
        "check_s": 1.0,
        "total_s": 20.0,
        "sides": {
            "container": {
                "prepare_s": 2.0,
                "measure_s": 17.0,
                "starts_s": 12.0,
                "start_s": [6.0, 6.0],
                "probes_s": 2.0,
                "destroy_s": 1.0,
                "clean_s": 0.5,
            }
        },
    }
    result = typed(raw)
    _headers, rows = report.time_table(result)
    table = {(r[0], r[1]): r[2:] for r in rows}
    assert table[("container", "create -> ready (n=2)")] == ["12.00 s", "60%"]
    assert table[("container", "other (explorer's own)")] == ["1.50 s", "8%"]
    assert table[("", "outside the create -> ready windows")] == ["8.00 s", "40%"]
    assert "\nTime\n" in report.render(result, detail=True)


def test_the_density_command_on_the_fake_side(counting, tmp_path):
    scenario_file = tmp_path / "fake.yaml"
    scenario_file.write_text(
        json.dumps(
            {
                "name": "fake",
                "timeouts": {"ready_s": 2},
                "workload": {"image": "fake:1", "port": 6379, "processes": ["fake"], "ready": "redis"},
            }
        )
    )
    out, png = tmp_path / "d.json", tmp_path / "d.png"
    result = CliRunner().invoke(
        main,
        [
            "density",
            "--scenario-file",
            str(scenario_file),
            "--sides",
            "fake",
            "--count",
            "3",
            "--step",
            "1",
            "--output",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fake container: 3 of 3 instances, 1 per step" in result.stdout and "Fits (least squares" in result.stdout
    assert re.search(r"explorer density: run [0-9a-f]{8}", result.stderr)
    doc = json.loads(out.read_text())
    assert [s["n"] for s in doc["sides"]["fake"]["steps"]] == [1, 2, 3] and png.stat().st_size > 10_000
    assert counting.live == []


def test_run_with_density_merges_the_figures_into_each_side(counting, tmp_path):
    scenario_file = tmp_path / "fake.yaml"
    scenario_file.write_text(
        json.dumps(
            {
                "name": "fake",
                "timeouts": {"ready_s": 2},
                "workload": {"image": "fake:1", "port": 6379, "processes": ["fake"], "ready": "redis"},
            }
        )
    )
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--scenario-file",
            str(scenario_file),
            "--sides",
            "fake",
            "--repeat",
            "1",
            "--density",
            "2",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["sides"]["fake"]["density"]["count"] == 2 and doc["density_runs"][0]["sides"] == ["fake"]
    assert "name" not in doc["sides"]["fake"]["density"] and counting.live == []


def test_a_scenario_can_size_the_tcg_cache_on_the_domain(tmp_path):
    from explorer.engines.domain import DomainSpec, domain_xml

    scen = from_dict(
        {
            "name": "v",
            "workload": {"image": "x:1", "port": 1, "processes": ["x"], "ready": "tcp"},
            "vm": {"tb_cache_mib": 64},
        }
    )

    def xml(accel: str) -> str:
        return domain_xml(
            DomainSpec("d", "r", 0, scen, accel, "", tmp_path, tmp_path / "o", tmp_path / "k", tmp_path / "i", [])
        )

    assert "<features><acpi/><tcg><tb-cache unit='MiB'>64</tb-cache></tcg></features>" in xml("tcg")
    assert "<tcg>" not in xml("kvm")
    assert "<tcg>" not in domain_xml(
        DomainSpec("d", "r", 0, SCENARIO, "tcg", "", tmp_path, tmp_path / "o", tmp_path / "k", tmp_path / "i", [])
    )


@pytest.mark.parametrize(
    ("text", "chosen", "expected"),
    [
        (None, None, (None, {})),
        ("20", None, (20, {})),
        ("runc=50,microvm=6", ("runc", "microvm"), (None, {"runc": 50, "microvm": 6})),
        ("10, microvm=2", None, (10, {"microvm": 2})),
    ],
)
def test_count_is_one_number_or_one_per_side(text, chosen, expected):
    assert density_run.parse_counts(text, chosen) == expected


@pytest.mark.parametrize(
    ("text", "chosen", "says"),
    [
        ("0", None, "'0' is not a count from 1 to 500"),
        ("runc=501", None, "'runc=501' is not a count"),
        ("runc=", None, "'runc=' is not a count"),
        ("runc=2.5", None, "'runc=2.5' is not a count"),
        ("5,6", None, "every side twice"),
        ("nosuch=3", None, "nosuch"),
        ("microvm=3", ("runc",), "--count names side microvm, which --sides does not run"),
    ],
)
def test_a_bad_count_is_a_usage_error_naming_it(text, chosen, says):
    with pytest.raises(UsageError, match=re.escape(says)):
        density_run.parse_counts(text, chosen)


def test_the_density_command_takes_a_count_per_side(counting, tmp_path):
    scenario_file = tmp_path / "fake.yaml"
    scenario_file.write_text(
        json.dumps(
            {
                "name": "fake",
                "timeouts": {"ready_s": 2},
                "workload": {"image": "fake:1", "port": 6379, "processes": ["fake"], "ready": "redis"},
            }
        )
    )
    out = tmp_path / "d.json"
    result = CliRunner().invoke(
        main,
        [
            "density",
            "--scenario-file",
            str(scenario_file),
            "--sides",
            "fake",
            "--count",
            "9,fake=2",
            "--step",
            "1",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [s["n"] for s in json.loads(out.read_text())["sides"]["fake"]["steps"]] == [1, 2]
    assert counting.live == []
