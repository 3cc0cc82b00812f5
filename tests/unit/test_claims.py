"""The document's claims judged on recorded results: reproduced, not reproduced (the figures
contradict the claim) and inconclusive (a side or a figure is missing); and the rule engine."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from explorer import claims, report
from explorer.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(name: str) -> dict[str, Any]:
    """container.json is a real run (redis, this host); vm.json is hand-written from the VM
    side's contract; both.json is the two together."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def verdicts(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["id"]: v for v in claims.judge(result)}


def part(verdict: dict[str, Any], needs: list[str]) -> dict[str, Any]:
    return next(p for p in verdict["parts"] if p["needs"] == needs)


# ---- the bundled claims -------------------------------------------------------------------


def test_bundled_claims_are_the_documents_seven():
    ids = [c["id"] for c in claims.load()]
    assert ids == ["visibility", "kernel", "size", "startup", "os-processes", "resources", "bin-packing"]
    assert all(c["quotes"] and c["parts"] for c in claims.load())


def test_both_sides_recorded():
    got = {k: v["verdict"] for k, v in verdicts(recorded("both")).items()}
    assert got == {
        "visibility": REPRODUCED, "kernel": REPRODUCED,
        "size": NOT_REPRODUCED,  # 112.4 MiB container image; the VM only 1.2x larger
        "startup": REPRODUCED, "os-processes": REPRODUCED, "resources": REPRODUCED, "bin-packing": REPRODUCED,
    }


def test_verdicts_are_json_and_carry_rule_and_evidence():
    out = claims.judge(recorded("both"))
    assert json.loads(json.dumps(out)) == out
    for v in out:
        assert {"id", "claim", "verdict", "rule", "evidence"} <= set(v)
        assert v["rule"] and v["evidence"]


def test_evidence_figures_equal_the_measurement_table():
    result = recorded("both")
    headers, rows = report.summary_table(result)
    table = {row[0]: dict(zip(headers[1:], row[1:])) for row in rows}
    v = verdicts(result)
    container, vm = result["sides"]["container"], result["sides"]["vm"]
    image = report.human_bytes(container["image"]["total_bytes"])
    assert image == table["image on disk"]["container"] and image in v["size"]["evidence"]
    assert report.human_bytes(vm["image"]["total_bytes"]) in table["image on disk"]["VM"]
    assert report.human_bytes(vm["image"]["total_bytes"]) in v["size"]["evidence"]
    for side, title in (("container", "container"), ("vm", "VM")):
        median = report.seconds(result["sides"][side]["startup"]["summary"]["ready_s"]["median"])
        assert table["start to ready"][title].startswith(median) and median in v["startup"]["evidence"]
    vmm_pss = report.human_bytes(vm["memory"]["runtime"]["pss_bytes"])
    assert vmm_pss in table["memory on host"]["VM"] and vmm_pss in v["resources"]["evidence"]
    assert "redis-server 23262" in table["workload in host's ps -e"]["container"]
    assert "redis-server 23262" in v["visibility"]["evidence"]


def test_size_example_reads_like_the_document():
    result = recorded("both")
    result["sides"]["container"]["image"]["total_bytes"] = 173_000_000
    result["sides"]["vm"]["image"]["total_bytes"] = 709_300_000
    v = verdicts(result)["size"]
    assert v["verdict"] == NOT_REPRODUCED  # outside the cited range: the figures contradict it
    assert v["evidence"] == ("container image 165.0 MiB: outside the 5-100 MB the document cites; "
                             "the VM's 676.4 MiB is 4.1x the container's")
    assert part(v, ["container", "vm"])["verdict"] == REPRODUCED


# ---- not reproduced -------------------------------------------------------------------------


def test_container_larger_than_the_vm_is_not_reproduced():
    result = recorded("both")
    result["sides"]["container"]["image"]["total_bytes"] = 400_000_000
    result["sides"]["vm"]["image"]["total_bytes"] = 300_000_000
    v = verdicts(result)["size"]
    assert v["verdict"] == NOT_REPRODUCED
    assert [p["verdict"] for p in v["parts"]] == [NOT_REPRODUCED, NOT_REPRODUCED]
    assert "only 0.8x the container's" in v["evidence"]


def test_small_container_and_large_vm_are_reproduced():
    result = recorded("both")
    result["sides"]["container"]["image"]["total_bytes"] = 50_000_000
    result["sides"]["vm"]["image"]["total_bytes"] = 600_000_000
    assert verdicts(result)["size"]["verdict"] == REPRODUCED


def test_container_with_its_own_boot_id_is_not_reproduced():
    """What gVisor looks like: a kernel of its own, not the host's running one."""
    result = recorded("both")
    result["sides"]["container"]["kernel"].update(
        guest_release="4.4.0", guest_boot_id="5f6d0c2e-0000-4000-8000-000000000000",
        same_release=False, same_boot_id=False, shared=False)
    v = verdicts(result)["kernel"]
    assert v["verdict"] == NOT_REPRODUCED
    assert part(v, ["container"])["evidence"] == (
        "container: kernel 4.4.0, boot_id != the host's (not the host's running kernel)")
    assert part(v, ["vm"])["verdict"] == REPRODUCED


def test_vm_whose_workload_name_shows_under_the_vmm_is_not_reproduced():
    result = recorded("both")
    result["sides"]["vm"]["visibility"]["named_on_host"].append(
        {"host_pid": 41901, "name": "redis-server", "this_target": True})
    v = verdicts(result)["visibility"]
    assert v["verdict"] == NOT_REPRODUCED
    assert part(v, ["vm"])["evidence"] == (
        "VM: the host sees 0 workload process(es) and 1 named redis-server under the VMM qemu-system-x86_64 41877")


def test_a_same_named_process_of_another_target_does_not_count():
    result = recorded("both")
    result["sides"]["vm"]["visibility"]["named_on_host"].append(
        {"host_pid": 999, "name": "redis-server", "this_target": False})
    assert verdicts(result)["visibility"]["verdict"] == REPRODUCED


def test_slow_container_start_is_not_near_instant():
    result = recorded("both")
    result["sides"]["container"]["startup"]["summary"]["ready_s"]["median"] = 2.5
    v = verdicts(result)["startup"]
    assert v["verdict"] == NOT_REPRODUCED
    assert "container ready in 2.50 s median (n=2): not near-instant" in v["evidence"]


def test_tcg_caveat_only_under_tcg():
    result = recorded("both")
    tcg = "under TCG (software emulation), VM timings do not represent a KVM host"
    assert verdicts(result)["startup"]["evidence"].count(tcg) == 1
    result["sides"]["vm"]["accel"] = "kvm"
    assert tcg not in verdicts(result)["startup"]["evidence"]


def test_container_with_extra_processes_is_not_only_its_application():
    result = recorded("both")
    inside = result["sides"]["container"]["visibility"]["inside"]
    inside["user_process_count"] = 3  # e.g. an init, a cron, the database
    v = verdicts(result)["os-processes"]
    assert v["verdict"] == NOT_REPRODUCED
    assert "container: 2 process(es) besides the workload" in v["evidence"]


# ---- inconclusive ---------------------------------------------------------------------------


def test_vm_side_missing_is_inconclusive_and_says_so():
    v = verdicts(recorded("container"))
    for claim_id in ("visibility", "kernel", "startup", "os-processes", "resources", "bin-packing"):
        assert v[claim_id]["verdict"] == INCONCLUSIVE
        assert "VM side not measured (this result has: container)" in v[claim_id]["evidence"]
    assert part(v["visibility"], ["container"])["verdict"] == REPRODUCED
    assert part(v["kernel"], ["container"])["verdict"] == REPRODUCED
    # Inconclusive for the VM, yet the container's own figures already contradict claim 3.
    assert v["size"]["verdict"] == NOT_REPRODUCED


def test_container_side_missing_is_inconclusive():
    v = verdicts(recorded("vm"))
    assert all(x["verdict"] == INCONCLUSIVE for x in v.values())
    assert part(v["kernel"], ["vm"])["verdict"] == REPRODUCED
    assert "container side not measured (this result has: VM)" in v["kernel"]["evidence"]


def test_unknown_figure_is_inconclusive_not_failed():
    result = recorded("both")
    result["sides"]["vm"]["kernel"] = {"available": False, "reason": "no serial console", "shared": None}
    v = verdicts(result)["kernel"]
    assert v["verdict"] == INCONCLUSIVE
    assert "sides.vm.kernel.shared is unknown (null)" in v["evidence"]


def test_missing_milestone_is_inconclusive():
    result = recorded("both")
    del result["sides"]["vm"]["startup"]["summary"]["kernel_s"]
    v = verdicts(result)["startup"]
    assert v["verdict"] == INCONCLUSIVE
    assert "the result has no sides.vm.startup.summary.kernel_s.median" in v["evidence"]


# ---- the rule engine ------------------------------------------------------------------------

RESULT = {"sides": {"container": {"items": [{"name": "a", "on": True}, {"name": "b", "on": False}],
                                  "x": 6, "y": 3, "zero": 0, "unknown": None}}}


@pytest.mark.parametrize(("spec", "value"), [
    ("sides.container.x", 6),
    ({"len": "sides.container.items"}, 2),
    ({"count": "sides.container.items", "where": {"on": True}}, 1),
    ({"join": "sides.container.items", "item": "{name}"}, "a, b"),
    ({"join": "sides.container.items", "where": {"on": "never"}, "empty": "nothing"}, "nothing"),
    ({"sum": ["sides.container.x", "sides.container.y", 1]}, 10),
    ({"diff": ["sides.container.x", "sides.container.y"]}, 3),
    ({"ratio": ["sides.container.x", "sides.container.y"]}, 2.0),
    ({"path": "sides.container.absent", "default": 0}, 0),
])
def test_figures(spec, value):
    assert claims.figure(spec, RESULT, {}) == value


@pytest.mark.parametrize("spec", [
    "sides.container.absent", "sides.container.unknown", "sides.vm.x",
    {"ratio": ["sides.container.x", "sides.container.zero"]},
])
def test_figures_that_cannot_be_had_are_missing(spec):
    with pytest.raises(claims.Missing):
        claims.figure(spec, RESULT, {})


@pytest.mark.parametrize(("test", "expected"), [
    ({"figure": "a", "between": [1, 5]}, True),
    ({"figure": "a", "between": [4, 5]}, False),
    ({"figure": "a", "lt": {"figure": "b"}}, True),
    ({"all": [{"figure": "a", "ge": 3}, {"figure": "s", "eq": "tcg"}]}, True),
    ({"any": [{"figure": "a", "gt": 3}, {"figure": "s", "ne": "tcg"}]}, False),
    ({"not": {"figure": "t", "eq": True}}, False),
])
def test_tests(test, expected):
    assert claims.passes(test, {"a": 3, "b": 4, "s": "tcg", "t": True}) is expected


def test_templates_substitute_names_only():
    text = claims.fill("{a:bytes} in {b:seconds}, {r:times}, {p:percent}, {n:count}; {a.__class__} {zz}",
                       {"a": 1536, "b": 0.25, "r": 4.06, "p": 0.53, "n": 1002.7})
    assert text == "1.5 KiB in 250 ms, 4.1x, 53%, 1,002; {a.__class__} ?"
    assert claims.fill("{s:bytes}", {"s": "qemu"}) == "qemu"  # a format never crashes on text


CUSTOM = """
version: 1
claims:
  - id: tiny-shim
    title: The container's shim is small
    quotes: [a quote]
    parts:
      - needs: [container]
        rule: the shim's PSS is under 64 MiB
        figures:
          shim: sides.container.memory.runtime.pss_bytes
        test: {figure: shim, lt: 67108864}
        evidence: "shim {shim:bytes} PSS"
"""


def test_a_claim_is_added_without_code(tmp_path: Path):
    path = tmp_path / "claims.yaml"
    path.write_text(CUSTOM)
    [v] = claims.judge(recorded("container"), claims.load(path))
    assert (v["id"], v["verdict"], v["evidence"]) == ("tiny-shim", REPRODUCED, "shim 12.1 MiB PSS")


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda c: c["parts"][0].pop("rule"), "'rule' is a required property"),
    (lambda c: c["parts"][0].update(needs=["lxc"]), "'lxc' is not one of"),
    (lambda c: c["parts"][0].update(evidence="{nope}"), "template uses unknown figure 'nope'"),
    (lambda c: c["parts"][0].update(evidence="{shim:hex}"), "unknown format 'hex'"),
    (lambda c: c["parts"][0].update(test={"figure": "nope", "eq": 1}), "unknown figure 'nope'"),
    (lambda c: c["parts"][0]["figures"].update(r={"ratio": ["shim", "later"]}), "'later' is not a figure"),
    (lambda c: c["parts"][0]["figures"].update(x={"eval": "__import__('os')"}), "figures/x"),
])
def test_invalid_claims_file_names_the_problem(tmp_path: Path, edit, problem):
    import yaml

    doc = yaml.safe_load(CUSTOM)
    edit(doc["claims"][0])
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(claims.ClaimsError) as caught:
        claims.load(path)
    assert problem in str(caught.value)


def test_unreadable_claims_file_is_a_claims_error(tmp_path: Path):
    with pytest.raises(claims.ClaimsError, match="cannot read it"):
        claims.load(tmp_path / "absent.yaml")


def test_judging_leaves_the_result_unchanged():
    result = recorded("both")
    before = copy.deepcopy(result)
    claims.judge(result)
    assert result == before
