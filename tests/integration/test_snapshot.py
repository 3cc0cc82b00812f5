"""The snapshot side (a microVM restored from a memory snapshot) against independent tools:
`ps -e` shows each restored QEMU started with libvirt's `-incoming` (a restore, not a boot),
`virsh list --all` shows nothing of the run afterwards, and the saved state and its work dir
are gone. The verdicts follow from its figures: its own kernel (claim 2), no kernel booting in
its starts (claim 4)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Explorer, backend_or_skip, ps_e, run_explorer, virsh_names

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]
HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.fixture(scope="module")
def restored_run(redis_artifact):
    """`explorer run redis --sides snapshot --repeat 2`, with QEMU's command lines polled."""
    backend_or_skip("snapshot")
    proc = Explorer("run", "redis", "--sides", "snapshot", "--repeat", "2", "--format", "json", "--no-load")
    qemus: dict[int, str] = {}
    while proc.poll() is None:
        qemus |= {pid: args for pid, args in ps_e("args").items() if "qemu-system" in args and "-snapshot-" in args}
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return {"doc": json.loads(out), "qemus": qemus, "pid": proc.pid}


def test_each_start_is_a_restore_not_a_boot(restored_run):
    side = restored_run["doc"]["sides"]["snapshot"]
    assert side["startup"]["milestones"] == ["process", "resumed", "ready"]
    assert "kernel_s" not in side["startup"]["summary"] and side["startup"]["summary"]["ready_s"]["n"] == 2
    restored = [args for args in restored_run["qemus"].values() if "-incoming" in args]
    booted = [args for args in restored_run["qemus"].values() if "-incoming" not in args]
    assert len(booted) == 1, booted  # the one boot the state was saved from
    assert len(restored) == 2, restored  # one restored QEMU per start
    snapshot = side["target"]["snapshot"]
    assert snapshot["state_bytes"] > 16 * 2**20 and snapshot["boot_to_ready_s"] > 0


def test_its_kernel_is_its_own_and_every_start_resumes_the_one_boot(restored_run):
    side = restored_run["doc"]["sides"]["snapshot"]
    kernel = side["kernel"]
    assert kernel["shared"] is False and kernel["guest_boot_id"] != HOST_BOOT_ID
    assert kernel["guest_boot_id"] == side["target"]["snapshot"]["boot_id"]
    claims = {c["id"]: c["sides"].get("snapshot") for c in restored_run["doc"]["claims"]}
    assert claims["kernel"]["verdict"] == "reproduced"
    assert claims["startup"]["verdict"] == "not reproduced"
    assert "no kernel booting in its starts" in claims["startup"]["evidence"]
    assert "its kernel booted once, before the measured starts" in claims["startup"]["evidence"]


def test_nothing_is_left(restored_run):
    run_id, pid = restored_run["doc"]["run_id"], restored_run["pid"]
    assert not [n for n in virsh_names() if "-snapshot-" in n]
    assert not [p for p in Path("/tmp").glob("explorer-vm-*") if p.name.split("-")[4] == str(pid)]
    assert run_id


def test_density_runs_one_restored_instance_and_says_why(redis_artifact, tmp_path):
    backend_or_skip("snapshot")
    out = tmp_path / "d.json"
    proc = run_explorer("density", "redis", "--sides", "snapshot", "--count", "3", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    side = json.loads(out.read_text())["sides"]["snapshot"]
    assert side["count"] == 1 and side["count_asked"] == 3 and side["stopped"]["by"] == "engine"
    assert "the saved domain's name and UUID" in side["stopped"]["reason"]
    assert not [n for n in virsh_names() if "-snapshot-" in n]


def test_the_inside_probe_runs_in_the_restored_guest_through_its_view_port(restored_run):
    """Issue 31 on the snapshot side: the probe goes in by the init image's view port (the one
    the restored guest serves), and the boot it reads is the saved one, not the host's."""
    inside = restored_run["doc"]["sides"]["snapshot"]["inside"]
    assert inside["available"], inside["reason"]
    assert "view port" in inside["delivery"], inside["delivery"]
    assert inside["summary"]["answered_by"] == "the guest's own kernel" and inside["summary"]["operations"] >= 25
    root = inside["runs"][1]["view"]
    assert (
        root["facts"]["boot_id"]["value"] == restored_run["doc"]["sides"]["snapshot"]["target"]["snapshot"]["boot_id"]
    )
    claim = next(c for c in restored_run["doc"]["claims"] if c["id"] == "isolation")
    assert claim["sides"]["snapshot"]["verdict"] == "reproduced"
