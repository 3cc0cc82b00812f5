"""The document's claims judged on recorded results: reproduced, not reproduced (the figures
contradict the claim) and inconclusive (a side or a figure is missing); and the rule engine."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from explorer import claims, document
from explorer.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from explorer.output import report
from tests.unit.documents import typed

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(name: str) -> dict[str, Any]:
    """container.json is a real run (redis, this host); vm.json is hand-written from the VM
    side's contract; both.json is the two together."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def verdicts(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each claim's verdict on the result (parsed as every reader gets it), as its JSON reads."""
    return {v.id: v.model_dump() for v in claims.judge(typed(result))}


def side(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    """One side's verdict on a claim."""
    return verdict["sides"][name]


def part(verdict: dict[str, Any], name: str, key: str = "kind") -> dict[str, Any]:
    """The first part of `name`'s verdict that is a kind part (key="kind") or a comparison."""
    return next(p for p in verdict["sides"][name]["parts"] if key in p)


def evidence(verdict: dict[str, Any]) -> str:
    return " ".join(s["evidence"] for s in verdict["sides"].values())


# ---- the bundled claims -------------------------------------------------------------------


def test_bundled_claims_are_the_documents_eight():
    ids = [c.id for c in claims.load()]
    assert ids == ["visibility", "kernel", "size", "startup", "os-processes", "resources", "bin-packing", "isolation"]
    assert all(c.quotes and c.parts for c in claims.load())


def test_both_sides_recorded():
    got = {k: v["verdict"] for k, v in verdicts(recorded("both")).items()}
    assert got == {
        "visibility": REPRODUCED,
        "kernel": REPRODUCED,
        "size": INCONCLUSIVE,  # an older result: no compressed container size, no VM content
        "startup": REPRODUCED,
        "os-processes": REPRODUCED,
        "resources": REPRODUCED,
        "bin-packing": REPRODUCED,
        "isolation": INCONCLUSIVE,  # an older result: no inside probe
    }


def test_verdicts_are_json_and_carry_rule_and_evidence():
    out = [v.model_dump(mode="json") for v in claims.judge(typed(recorded("both")))]
    assert json.loads(json.dumps(out)) == out
    for v in out:
        assert {"id", "claim", "verdict", "rule", "summary", "sides"} <= set(v)
        assert v["rule"] and v["summary"] and all(s["evidence"] for s in v["sides"].values())


def test_evidence_figures_equal_the_measurement_table():
    result = document.upgraded(recorded("both"))
    headers, rows = report.summary_table(typed(result))
    table = {row[0]: dict(zip(headers[1:], row[1:])) for row in rows}
    v = verdicts(result)
    container, vm = result["sides"]["container"], result["sides"]["vm"]
    image = report.human_bytes(container["image"]["content_bytes"])  # an older result: Docker's Size
    assert f"content {image} unpacked" in table["image size"]["container"]
    # an older result has no such figure: absent, it reads as unknown in the typed document
    assert "side.image.stored_bytes is unknown (null)" in side(v["size"], "container")["evidence"]
    assert report.human_bytes(vm["image"]["total_bytes"]) in table["image size"]["VM"]  # its one figure, named
    assert "saved by an older explorer" in table["image size"]["VM"]
    assert side(v["size"], "vm")["verdict"] == INCONCLUSIVE  # no content figure: nothing to compare like for like
    assert "vm.image.content_bytes" in side(v["size"], "vm")["evidence"]
    for name, title in (("container", "container"), ("vm", "VM")):
        median = report.seconds(result["sides"][name]["startup"]["summary"]["ready_s"]["median"])
        assert table["start to ready"][title].startswith(median) and median in side(v["startup"], name)["evidence"]
    vmm_pss = report.human_bytes(vm["memory"]["runtime"]["pss_bytes"])
    assert vmm_pss in table["memory on host"]["VM"] and vmm_pss in side(v["resources"], "vm")["evidence"]
    assert "redis-server 23262" in table["workload in host's ps -e"]["container"]
    assert "redis-server 23262" in side(v["visibility"], "container")["evidence"]


def sized(container_content: int, container_stored: int, vm_content: int, vm_stored: int) -> dict:
    result = document.upgraded(recorded("both"))
    result["sides"]["container"]["image"].update(content_bytes=container_content, stored_bytes=container_stored)
    result["sides"]["vm"]["image"].update(content_bytes=vm_content, stored_bytes=vm_stored)
    return result


def test_size_example_reads_like_the_document():
    """A container image published at 38 MB (its layers compressed) holds 113 MB; a VM's disk
    holds 1.1 GB, though its compressed qcow2 is smaller than the container's content."""
    v = verdicts(sized(117_822_610, 38_304_051, 1_100_000_000, 276_000_000))["size"]
    assert v["verdict"] == REPRODUCED
    assert side(v, "container")["evidence"] == (
        "container image 36.5 MiB compressed as a registry stores it: within the 5-100 MB the document cites; "
        "112.4 MiB unpacked, outside the range (published image sizes are usually the compressed ones)"
    )
    assert side(v, "vm")["evidence"] == (
        "VM holds 1.0 GiB unpacked, 9.3x container's 112.4 MiB; stored, VM 263.2 MiB and container 36.5 MiB"
    )


def test_the_ratio_compares_content_not_a_compressed_disk():
    """The verdict does not flip on a storage choice: a compressed qcow2 smaller than the
    container's content still holds far more."""
    v = verdicts(sized(381_400_000, 120_000_000, 1_120_000_000, 374_000_000))["size"]
    assert part(v, "vm", "compare")["verdict"] == REPRODUCED and "2.9x" in side(v, "vm")["evidence"]


# ---- not reproduced -------------------------------------------------------------------------


def test_container_larger_than_the_vm_is_not_reproduced():
    v = verdicts(sized(400_000_000, 150_000_000, 300_000_000, 100_000_000))["size"]
    assert v["verdict"] == NOT_REPRODUCED
    assert [s["verdict"] for s in v["sides"].values()] == [NOT_REPRODUCED, NOT_REPRODUCED]
    assert "only 0.8x container's" in side(v, "vm")["evidence"]


def test_small_container_and_large_vm_are_reproduced():
    assert verdicts(sized(50_000_000, 20_000_000, 600_000_000, 200_000_000))["size"]["verdict"] == REPRODUCED


def test_container_with_its_own_boot_id_is_not_reproduced():
    """What gVisor looks like: a kernel of its own, not the host's running one."""
    result = recorded("both")
    result["sides"]["container"]["kernel"].update(
        guest_release="4.4.0",
        guest_boot_id="5f6d0c2e-0000-4000-8000-000000000000",
        same_release=False,
        same_boot_id=False,
        shared=False,
    )
    v = verdicts(result)["kernel"]
    assert v["verdict"] == claims.MIXED
    assert side(v, "container")["evidence"] == (
        "container: its own kernel 4.4.0 (host: 6.18.44-fc-v669), not the host's running kernel (by boot_id)"
    )
    assert side(v, "vm")["verdict"] == REPRODUCED


def test_vm_whose_workload_name_shows_under_the_vmm_is_not_reproduced():
    result = recorded("both")
    result["sides"]["vm"]["visibility"]["named_on_host"].append(
        {"host_pid": 41901, "name": "redis-server", "this_target": True}
    )
    v = verdicts(result)["visibility"]
    assert v["verdict"] == claims.MIXED
    assert side(v, "vm")["evidence"] == (
        "VM: the host sees 0 workload process(es) and 1 named redis-server under the VMM qemu-system-x86_64 41877"
    )


def test_a_same_named_process_of_another_target_does_not_count():
    result = recorded("both")
    result["sides"]["vm"]["visibility"]["named_on_host"].append(
        {"host_pid": 999, "name": "redis-server", "this_target": False}
    )
    assert verdicts(result)["visibility"]["verdict"] == REPRODUCED


def test_slow_container_start_is_not_near_instant():
    result = recorded("both")
    result["sides"]["container"]["startup"]["summary"]["ready_s"]["median"] = 2.5
    v = verdicts(result)["startup"]
    assert side(v, "container")["verdict"] == NOT_REPRODUCED
    assert side(v, "container")["evidence"] == "container ready in 2.50 s median (n=2): not near-instant"


def test_tcg_caveat_only_under_tcg():
    result = recorded("both")
    tcg = "under TCG (software emulation), VM timings do not represent a KVM host"
    assert side(verdicts(result)["startup"], "vm")["evidence"].count(tcg) == 1
    result["sides"]["vm"]["accel"] = "kvm"
    assert tcg not in evidence(verdicts(result)["startup"])


def test_container_with_extra_processes_is_not_only_its_application():
    result = recorded("both")
    inside = result["sides"]["container"]["visibility"]["inside"]
    inside["user_process_count"] = 3  # e.g. an init, a cron, the database
    v = verdicts(result)["os-processes"]
    assert side(v, "container")["verdict"] == NOT_REPRODUCED
    assert "container: 2 process(es) besides the workload" in side(v, "container")["evidence"]


# ---- inconclusive ---------------------------------------------------------------------------


def test_vm_side_missing_is_inconclusive_and_says_so():
    v = verdicts(recorded("container"))
    for claim_id in ("visibility", "kernel", "startup", "os-processes", "resources", "bin-packing"):
        assert v[claim_id]["verdict"] == INCONCLUSIVE
        assert v[claim_id]["missing_kinds"] == ["vm"] and "no vm side measured" in v[claim_id]["summary"]
    assert side(v["visibility"], "container")["verdict"] == REPRODUCED
    assert side(v["kernel"], "container")["verdict"] == REPRODUCED
    # Inconclusive for the VM (none measured), and for the container too: this older result
    # has no compressed size for the 5-100 MB range to read.
    assert v["size"]["verdict"] == INCONCLUSIVE


def test_container_side_missing_is_inconclusive():
    v = verdicts(recorded("vm"))
    assert all(x["verdict"] == INCONCLUSIVE for x in v.values())
    assert side(v["kernel"], "vm")["verdict"] == REPRODUCED
    assert "no container side measured" in v["kernel"]["summary"]
    assert "vm" not in v["size"]["sides"]  # a comparison needs the container it compares with


def test_unknown_figure_is_inconclusive_not_failed():
    result = recorded("both")
    result["sides"]["vm"]["kernel"] = {
        "available": False,
        "reason": "no serial console",
        "shared": None,
        "host_release": "6.1.0",
        "host_boot_id": "b",
    }
    v = verdicts(result)["kernel"]
    assert v["verdict"] == INCONCLUSIVE
    assert side(v, "vm")["evidence"] == "VM: side.kernel.shared is unknown (null)"


def test_missing_milestone_is_inconclusive():
    result = recorded("both")
    del result["sides"]["vm"]["startup"]["summary"]["kernel_s"]
    v = verdicts(result)["startup"]
    assert v["verdict"] == INCONCLUSIVE
    assert "none of side.startup.summary.kernel_s.median" in side(v, "vm")["evidence"]


# ---- the rule engine ------------------------------------------------------------------------


class Item(BaseModel):
    name: str
    on: bool


class Figures(BaseModel):
    """A side as the rule engine reads one: typed fields, lists of typed items."""

    items: list[Item]
    x: int
    y: int
    zero: int
    unknown: int | None = None


RESULT: dict[str, BaseModel] = {
    "side": Figures(items=[Item(name="a", on=True), Item(name="b", on=False)], x=6, y=3, zero=0, unknown=None)
}


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("side.x", 6),
        ({"len": "side.items"}, 2),
        ({"count": "side.items", "where": {"on": True}}, 1),
        ({"join": "side.items", "item": "{name}"}, "a, b"),
        ({"join": "side.items", "where": {"on": "never"}, "empty": "nothing"}, "nothing"),
        ({"sum": ["side.x", "side.y", 1]}, 10),
        ({"diff": ["side.x", "side.y"]}, 3),
        ({"ratio": ["side.x", "side.y"]}, 2.0),
        ({"path": "side.absent", "default": 0}, 0),
    ],
)
def test_figures(spec, value):
    assert claims.figure(spec, RESULT, {}) == value


@pytest.mark.parametrize(
    "spec",
    [
        "side.absent",
        "side.unknown",
        "other.x",
        {"ratio": ["side.x", "side.zero"]},
    ],
)
def test_figures_that_cannot_be_had_are_missing(spec):
    with pytest.raises(claims.Missing):
        claims.figure(spec, RESULT, {})


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ({"figure": "a", "between": [1, 5]}, True),
        ({"figure": "a", "between": [4, 5]}, False),
        ({"figure": "a", "lt": {"figure": "b"}}, True),
        ({"all": [{"figure": "a", "ge": 3}, {"figure": "s", "eq": "tcg"}]}, True),
        ({"any": [{"figure": "a", "gt": 3}, {"figure": "s", "ne": "tcg"}]}, False),
        ({"not": {"figure": "t", "eq": True}}, False),
    ],
)
def test_tests(test, expected):
    assert claims.passes(test, {"a": 3, "b": 4, "s": "tcg", "t": True}) is expected


def test_templates_substitute_names_only():
    text = claims.fill(
        "{a:bytes} in {b:seconds}, {r:times}, {p:percent}, {n:count}; {a.__class__} {zz}",
        {"a": 1536, "b": 0.25, "r": 4.06, "p": 0.53, "n": 1002.7},
    )
    assert text == "1.5 KiB in 250 ms, 4.1x, 53%, 1,002; {a.__class__} ?"
    assert claims.fill("{s:bytes}", {"s": "qemu"}) == "qemu"  # a format never crashes on text


CUSTOM = """
version: 2
claims:
  - id: tiny-shim
    title: The container's shim is small
    quotes: [a quote]
    parts:
      - kind: container
        rule: the shim's PSS is under 64 MiB
        figures:
          shim: side.memory.runtime.pss_bytes
        test: {figure: shim, lt: 67108864}
        evidence: "{side_title}: shim {shim:bytes} PSS"
"""


def test_a_claim_is_added_without_code(tmp_path: Path):
    path = tmp_path / "claims.yaml"
    path.write_text(CUSTOM)
    [judged] = claims.judge(typed(recorded("container")), claims.load(path))
    v = judged.model_dump()
    assert (v["id"], v["verdict"], side(v, "container")["evidence"]) == (
        "tiny-shim",
        REPRODUCED,
        "container: shim 12.1 MiB PSS",
    )


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda c: c["parts"][0].pop("rule"), "'rule' is a required property"),
        (lambda c: c["parts"][0].update(kind="lxc"), "'lxc' is not one of"),
        (lambda c: c["parts"][0]["figures"].update(shim="sides.container.x"), "must start with one of side, host"),
        (lambda c: c["parts"][0].update(compare=["container", "vm"]), "is valid under each of"),
        (lambda c: c["parts"][0].update(evidence="{nope}"), "template uses unknown figure 'nope'"),
        (lambda c: c["parts"][0].update(evidence="{shim:hex}"), "unknown format 'hex'"),
        (lambda c: c["parts"][0].update(test={"figure": "nope", "eq": 1}), "unknown figure 'nope'"),
        (lambda c: c["parts"][0]["figures"].update(r={"ratio": ["shim", "later"]}), "'later' is not a figure"),
        (lambda c: c["parts"][0]["figures"].update(x={"eval": "__import__('os')"}), "figures/x"),
    ],
)
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
    result = typed(recorded("both"))
    before = result.model_copy(deep=True)
    claims.judge(result)
    assert result == before


# ---- several sides of one kind --------------------------------------------------------------


def gvisor_like(result: dict[str, Any]) -> dict[str, Any]:
    """A second container side with what gVisor shows: no workload process on the host, its
    own kernel release and no boot_id inside."""
    result = document.upgraded(result)
    gv = copy.deepcopy(result["sides"]["container"])
    gv.update(name="gvisor", kind="container", title="gVisor container", roles=["sandbox", "gofer", "stub", "shim"])
    gv["visibility"].update(
        workload_processes=[],
        named_on_host=[],
        visible_on_host=False,
        runtime_by_role=[{"role": "sandbox", "count": 1, "pids": "7"}],
    )
    gv["kernel"].update(
        guest_release="4.4.0",
        guest_boot_id=None,
        same_release=False,
        same_boot_id=None,
        shared=False,
        basis="release (no boot_id inside)",
    )
    result["sides"] = {"container": result["sides"]["container"], "gvisor": gv, "vm": result["sides"]["vm"]}
    return result


def test_each_side_of_a_kind_gets_its_own_verdict_and_the_summary_says_where_they_disagree():
    v = verdicts(gvisor_like(recorded("both")))
    assert list(v["kernel"]["sides"]) == ["container", "gvisor", "vm"]
    assert side(v["kernel"], "container")["verdict"] == REPRODUCED
    assert side(v["kernel"], "gvisor")["verdict"] == NOT_REPRODUCED
    assert "its own kernel 4.4.0" in side(v["kernel"], "gvisor")["evidence"]
    assert v["kernel"]["verdict"] == claims.MIXED
    assert v["kernel"]["summary"].startswith("reproduced for container, vm; not reproduced for gvisor (gVisor")
    assert 'qualifies it: "With a container runtime like Docker' in v["kernel"]["summary"]
    assert side(v["visibility"], "gvisor")["verdict"] == NOT_REPRODUCED
    assert side(v["visibility"], "gvisor")["evidence"].endswith("the host sees only sandbox 7")


def test_comparisons_name_both_sides_and_use_the_first_container_as_reference():
    v = verdicts(gvisor_like(sized(117_822_610, 38_304_051, 141_975_552, 160_000_000)))
    compared = part(v["size"], "vm", "compare")
    assert compared["compare"] == ["container", "vm"]
    assert compared["evidence"] == "VM holds 135.4 MiB unpacked, only 1.2x container's 112.4 MiB"
    assert all(p.get("kind") == "container" for p in side(v["size"], "gvisor")["parts"])


def test_an_old_result_is_upgraded_not_changed():
    result = recorded("both")
    assert result["schema"] == "explorer.result/1"
    before = copy.deepcopy(result)
    v = verdicts(result)
    assert result == before and v["kernel"]["verdict"] == REPRODUCED
