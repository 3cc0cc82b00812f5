"""The identity probe's pure logic: uid_map parsing and mapping both ways, and which capabilities
count over the host (only those of a process in the host's own user namespace)."""

from __future__ import annotations

from explorer.engines.podman import subid_range, ulimits
from explorer.output import report
from explorer.probes import identity
from tests.unit.documents import side_record

# As /proc/PID/uid_map shows them: the initial namespace, and Podman's --userns=auto
INITIAL = "         0          0 4294967295\n"
AUTO = "         0 2147483647      65534\n"


def test_uid_map_parses_ranges():
    assert identity.parse_id_map(INITIAL) == [(0, 0, 4294967295)]
    assert identity.parse_id_map(AUTO + "65534 100000 1\n") == [(0, 2147483647, 65534), (65534, 100000, 1)]
    assert identity.parse_id_map("") == []


def test_ids_map_both_ways_and_unmapped_is_none():
    auto = identity.parse_id_map(AUTO)
    assert identity.outside(auto, 0) == 2147483647
    assert identity.outside(auto, 100) == 2147483747
    assert identity.inside(auto, 2147483747) == 100
    assert identity.outside(auto, 65534) is None  # past the range's end
    assert identity.inside(auto, 0) is None  # the host's root has no ID inside
    assert identity.is_identity(identity.parse_id_map(INITIAL)) and not identity.is_identity(auto)


def test_user_namespaced_root_has_no_power_over_the_host():
    # root inside a user namespace of its own, with Docker's default capability set
    status = {"Uid": "2147483647\t2147483647\t2147483647\t2147483647", "CapEff": "00000000a80425fb"}
    got = identity.identity(42, status, AUTO, own_ns=True)
    assert got["host_uid"] == 2147483647 and got["uid_inside"] == 0
    assert got["root_host_uid"] == 2147483647 and got["root_is_host_root"] is False
    assert len(got["capabilities"]) == 14 and got["capabilities_over_host"] == []
    assert got["capability_count_over_host"] == 0 and got["runs_as_host_root"] is False


def test_root_in_the_host_user_namespace_keeps_its_capabilities_over_the_host():
    status = {"Uid": "0\t0\t0\t0", "CapEff": "00000000a80425fb"}
    got = identity.identity(7, status, INITIAL, own_ns=False)
    assert got["runs_as_host_root"] is True and got["root_is_host_root"] is True
    assert got["capability_count_over_host"] == 14 and "net_raw" in got["capabilities_over_host"]


def test_a_vm_has_no_host_process_to_judge():
    class Ctx:
        kind = "vm"

    assert identity.probe(Ctx()) == {"available": False, "reason": identity.NOT_APPLICABLE}  # type: ignore[arg-type]
    assert report._identity(side_record({"identity": {"available": False, "reason": identity.NOT_APPLICABLE}})) == (
        "not applicable: no host process"
    )


def test_the_summary_row_says_host_uid_root_and_capabilities():
    got = identity.identity(42, {"Uid": "2147483747\t2147483747\t2147483747\t2147483747", "CapEff": "0"}, AUTO, True)
    row = report._identity(side_record({"identity": {**got, "subject": "workload"}}))
    assert (
        row
        == "workload: host UID 2147483747 (UID 100 inside); root inside = host UID 2147483647; caps over the host: none"
    )


def test_subordinate_range_is_read_for_its_user_only(tmp_path):
    path = tmp_path / "subuid"
    path.write_text("alice:100000:65536\ncontainers:2147483647:2147483648\n")
    assert subid_range(str(path)) == (2147483647, 2147483648)
    assert subid_range(str(path), "bob") is None
    assert subid_range(str(tmp_path / "absent")) is None


def test_ulimits_stay_within_the_hard_limits(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 20000))
    nofile, nproc = ulimits()
    assert (nofile["Name"], nofile["Soft"], nofile["Hard"]) == ("nofile", 20000, 20000)
    assert (nproc["Name"], nproc["Hard"]) == ("nproc", 4096)
