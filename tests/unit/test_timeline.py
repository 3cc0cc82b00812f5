"""Timelines checked before verdicts: a side whose milestones happened in an impossible order
(a VM "ready" before its kernel booted: a readiness check a proxy fooled) gets "inconclusive",
with the reason, on every claim that reads its startup figures; the report says so at the top,
and `run --strict` exits non-zero."""

from __future__ import annotations

import copy
import json

from click.testing import CliRunner

from explorer import claims
from explorer.cli import main
from explorer.output import report
from explorer.probes.startup import timeline
from explorer.result import Result
from tests.unit.documents import typed
from tests.unit.test_claims import recorded
from tests.unit.test_runner_fake import fake  # noqa: F401 - the fake side's fixture

VM_ORDER = (("created", "process", "kernel", "ready"), ("kernel", "agent"))


def test_milestones_in_order_pass_and_a_ready_before_the_kernel_does_not():
    ok = [{"created_s": 0.4, "process_s": 0.41, "kernel_s": 3.4, "agent_s": 27.0, "ready_s": 30.1}]
    assert timeline(ok, VM_ORDER) == {"ok": True, "order": [list(c) for c in VM_ORDER], "problems": []}
    fooled = [*ok, {"created_s": 0.4, "process_s": 0.41, "kernel_s": 3.4, "agent_s": 27.0, "ready_s": 0.799}]
    check = timeline(fooled, VM_ORDER)
    assert not check["ok"] and check["problems"] == ["start 2: ready (799 ms) before kernel (3.40 s)"]
    assert timeline([{"created_s": 0.4, "ready_s": 30.0, "agent_s": 40.0}], VM_ORDER)["ok"]  # agent after ready


def impossible() -> Result:
    result = copy.deepcopy(recorded("both"))
    result["sides"]["vm"]["startup"]["timeline"] = timeline(
        [{"created_s": 0.4, "kernel_s": 3.57, "ready_s": 0.826}], VM_ORDER
    )
    return typed(result)


def test_claims_that_read_startup_figures_are_inconclusive_with_the_reason():
    judged = {c.id: c.model_dump() for c in claims.judge(impossible())}
    vm = judged["startup"]["sides"]["vm"]
    assert vm["verdict"] == claims.INCONCLUSIVE
    assert "VM's timeline is impossible (start 1: ready (826 ms) before kernel (3.57 s))" in vm["evidence"]
    assert judged["kernel"]["sides"]["vm"]["verdict"] == claims.REPRODUCED  # reads no startup figure
    assert judged["startup"]["sides"]["container"]["verdict"] == claims.REPRODUCED


def test_the_report_says_so_at_the_top():
    result = claims.judged(impossible())
    text = report.render(result)
    head = text.split("\nSide by side")[0]
    assert "Warning: the VM's timeline is impossible (start 1: ready (826 ms) before kernel (3.57 s))" in head
    assert report.untrusted(typed(recorded("both"))) == []


def test_strict_run_exits_non_zero_after_the_report(fake, tmp_path):  # noqa: F811 - the fixture
    fake.behaviour["impossible"] = True  # the fake marks its creation after its readiness
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
    args = ["run", "--scenario-file", str(scenario_file), "--sides", "fake", "--repeat", "1"]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 0 and "timeline is impossible" in plain.stdout
    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 1 and "timeline is impossible" in strict.stdout
    assert "--strict: the fake container's timeline is impossible" in str(strict.exception)
