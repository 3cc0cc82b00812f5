"""The nspawn side (a system container) against independent tools: `ps -e` polled while it
runs, /proc's status of what it shows, `ip netns list`, the host's mount table, the cgroup
trees and the temp dir. One CLI run with the standard load for most tests; a readiness
failure, a Ctrl-C and a kill -9 + `explorer clean` each start their own (~1 s boots)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import ROOT, Explorer, backend_or_skip, ctrl_c_when, ps_e, run_explorer

pytestmark = [pytest.mark.nspawn, pytest.mark.slow]
HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
PREFIX = "explorer-nspawn-"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def leftovers() -> list[str]:
    """Anything of the nspawn side on the host, found without explorer's code."""
    found = [
        f"netns {n}"
        for n in subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.split()
        if n.startswith(PREFIX)
    ]
    found += [f"dir {p}" for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}*")]
    found += [f"cgroup {p}" for root in CGROUP_ROOTS for p in root.glob(f"{PREFIX}*")]
    found += [f"mount {line}" for line in Path("/proc/self/mounts").read_text().splitlines() if PREFIX in line]
    for proc in psutil.process_iter(["name", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if proc.info["name"] == "systemd-nspawn" and any(PREFIX in a for a in argv):
            found.append(f"process {proc.pid}")
    return found


@pytest.fixture(scope="module")
def nspawn_backend():
    return backend_or_skip("nspawn")


@pytest.fixture(scope="module")
def cli_run(nspawn_backend):
    """`explorer run redis --sides nspawn --repeat 1` with the standard load, `ps -e` polled."""
    proc = Explorer("run", "redis", "--sides", "nspawn", "--repeat", "1", "--format", "json")
    seen: dict[int, tuple[str, int, list[str]]] = {}
    while proc.poll() is None:
        for pid, comm in ps_e("comm").items():
            if comm == "redis-server" and pid not in seen:
                try:
                    p = psutil.Process(pid)
                    seen[pid] = (comm, p.uids().real, [a.name() for a in p.parents()])
                except psutil.Error:
                    pass
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return {"doc": json.loads(out), "redis": seen}


def test_the_hosts_ps_lists_the_containers_redis_server(cli_run):
    ours = {pid: v for pid, v in cli_run["redis"].items() if "systemd-nspawn" in v[2]}
    assert ours, cli_run["redis"]
    _comm, uid, parents = next(iter(ours.values()))
    assert parents[:2] == ["systemd", "systemd-nspawn"]  # the container's PID 1, then nspawn
    assert uid != 0  # the image's redis user, no user namespace: that UID on the host too
    side = cli_run["doc"]["sides"]["nspawn"]
    assert side["kind"] == "container" and side["visibility"]["visible_on_host"] is True


def test_claim_5_is_not_reproduced_and_names_systemd(cli_run):
    claims = {c["id"]: c for c in cli_run["doc"]["claims"]}
    verdict = claims["os-processes"]["sides"]["nspawn"]
    assert verdict["verdict"] == "not reproduced" and "systemd" in verdict["evidence"]
    inside = {p["name"] for p in cli_run["doc"]["sides"]["nspawn"]["visibility"]["inside"]["processes"]}
    assert {"systemd", "systemd-journal", "cron", "sshd", "redis-server"} <= inside, inside


def test_claim_2_is_reproduced_with_the_hosts_boot_id(cli_run):
    claims = {c["id"]: c for c in cli_run["doc"]["claims"]}
    assert claims["kernel"]["sides"]["nspawn"]["verdict"] == "reproduced"
    kernel = cli_run["doc"]["sides"]["nspawn"]["kernel"]
    assert kernel["guest_boot_id"] == HOST_BOOT_ID and kernel["guest_release"] == os.uname().release


def test_the_load_runs_on_both_paths_on_loopback(cli_run):
    paths = cli_run["doc"]["sides"]["nspawn"]["load"]["paths"]
    assert len(paths) == 2
    for name, path in paths.items():
        assert path["status"] == "ok", (name, path)
        assert path["endpoint"].startswith("127.0.0.1:")
        assert path["summary"]["ops_s"]["median"] > 1000
    prefixes = [p["prefix"] for p in paths.values()]
    assert [] in prefixes and any(p[:3] == ["ip", "netns", "exec"] for p in prefixes)


def test_sizes_compare_the_root_without_its_kernel(cli_run):
    image = cli_run["doc"]["sides"]["nspawn"]["image"]
    assert 100 * 2**20 < image["content_bytes"] < 400 * 2**20
    assert "without its kernel" in image["content_method"]


def test_nothing_is_left_after_the_run(cli_run):
    assert leftovers() == []


def test_a_readiness_failure_leaves_nothing(nspawn_backend, cli_run, tmp_path):
    # Redis never answers a PostgreSQL startup message: the run times out and cleans up.
    data = yaml.safe_load((ROOT / "scenarios" / "redis.yaml").read_text())
    data["workload"]["ready"] = "postgres"
    data["timeouts"] = {**data.get("timeouts", {}), "ready_s": 3}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_explorer("run", "--scenario-file", str(path), "--sides", "nspawn", "--repeat", "1", "--no-load")
    assert result.returncode == 4, result.stderr
    assert leftovers() == []


def _wait_for_a_container(proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(i.startswith("process") for i in leftovers()):
        assert proc.poll() is None and time.monotonic() < deadline, "no container appeared"
        time.sleep(0.05)


def test_ctrl_c_during_the_start_leaves_nothing(nspawn_backend, cli_run):
    proc = Explorer("run", "redis", "--sides", "nspawn", "--repeat", "20", "--no-load")
    started = lambda: any(i.startswith("process") for i in leftovers())
    ctrl_c_when(proc, started, "a container", timeout=120)
    assert leftovers() == []


def test_clean_after_kill_9_removes_a_dead_runs_instance_only(nspawn_backend, cli_run):
    proc = Explorer("run", "redis", "--sides", "nspawn", "--repeat", "20", "--no-load")
    _wait_for_a_container(proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    left = leftovers()
    # its netns at least; its systemd-nspawn too, unless the parent-death signal ended it first
    # (or the kill fell between two starts): what `clean` must remove either way
    assert any(i.startswith("netns") for i in left), left
    result = run_explorer("clean")
    assert result.returncode == 0, result.stderr
    assert "nspawn" in result.stdout + result.stderr
    assert leftovers() == []
