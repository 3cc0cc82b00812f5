"""The nginx scenario end to end: a web workload built offline from Debian's nginx, ready when
GET / answers 200, in the container and in the VM; checked against `ps -e` while it runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from explorer.dockerd import docker_client
from tests.conftest import ROOT, Explorer, explorer_containers, ps_e, run_explorer

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RUN_TIMEOUT_S = 1500  # the first run builds the rootfs (and the VM disk) offline


@pytest.fixture(scope="module")
def nginx_ref(docker_backend) -> str:
    """The offline nginx image, built once (cached by content hash across sessions too)."""
    from explorer import scenario

    return docker_backend.prepare(scenario.load("nginx")).ref


def run_watching_ps(*args: str) -> tuple[dict, list[dict[int, str]]]:
    """`explorer run ARGS --format json` in a child process, with `ps -e` snapshots (PID ->
    "PPID COMM ARGS") taken while it runs: (the result, the snapshots)."""
    proc = Explorer("run", *args, "--format", "json")
    snapshots = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        snapshots.append(ps_e("ppid,comm,args"))
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return json.loads(out), snapshots


def http_readiness(result: dict) -> None:
    scen = result["scenario"]
    assert (scen["ready"], scen["ready_params"], scen["ready_warning"]) == ("http", {"path": "/", "status": 200}, None)


def test_container_master_and_workers_show_in_host_ps(docker_backend, nginx_ref):
    result, snapshots = run_watching_ps("nginx", "--sides", "runc", "--repeat", "1", "--load-seconds", "1")
    http_readiness(result)
    side = result["sides"]["runc"]
    # the standard HTTP load: wrk on the host, against the container and the native process
    for load in (side["load"], result["load"]["native"]):
        assert load["status"] == "ok", load
        assert load["client"].startswith("wrk ") and load["summary"]["ops_s"]["median"] > 0
        assert all(r["detail"]["non_2xx_3xx"] == 0 for r in load["rounds"])  # every answer was a page
    counted = side["load"]["traced"]
    assert counted["by_role"]["workload"]["calls"] > 0  # nginx's own calls reach the host's kernel
    reported = {p["host_pid"]: p for p in side["visibility"]["workload_processes"] if p["name"] == "nginx"}
    # every command line each PID showed: one that is exiting (the container stopped) shows as [nginx]
    seen: dict[int, set[str]] = {}
    for snap in snapshots:
        for pid, line in snap.items():
            if pid in reported:
                seen.setdefault(pid, set()).add(line.split(None, 2)[2])
    masters = [pid for pid, lines in seen.items() if any(a.startswith("nginx: master process") for a in lines)]
    workers = [pid for pid, lines in seen.items() if any(a.startswith("nginx: worker process") for a in lines)]
    assert len(masters) == 1 and len(workers) == 2, seen  # worker_processes 2, pinned
    assert reported[masters[0]]["uid"] == 0 and {reported[w]["user"] for w in workers} == {"www-data"}
    assert all(reported[w]["parents"][0]["pid"] == masters[0] for w in workers)
    assert side["visibility"]["visible_on_host"] is True
    assert explorer_containers(docker_client()) == []


@pytest.mark.libvirt
def test_vm_serves_the_page_and_the_host_sees_only_qemu(docker_backend, libvirt_backend, nginx_ref):
    result, snapshots = run_watching_ps("nginx", "--sides", "microvm", "--repeat", "1", "--no-load")
    http_readiness(result)
    side = result["sides"]["microvm"]
    assert side["visibility"]["visible_on_host"] is False
    inside = [p["name"] for p in side["visibility"]["inside"]["processes"]]
    assert inside.count("nginx") == 3  # the master and its 2 workers, inside the guest
    (qemu_pid,) = [p["host_pid"] for p in side["visibility"]["runtime_processes"]]
    for snap in snapshots:  # no nginx on the host descends from the VM's QEMU
        for pid, line in snap.items():
            if line.split()[1] == "nginx":
                assert qemu_pid not in ancestors(snap, pid)


def ancestors(snapshot: dict[int, str], pid: int) -> list[int]:
    chain, parent = [], int(snapshot[pid].split()[0])
    while parent in snapshot and parent > 1 and parent not in chain:
        chain.append(parent)
        parent = int(snapshot[parent].split()[0])
    return chain


def test_a_missing_page_times_out_naming_the_status(docker_backend, nginx_ref, tmp_path: Path):
    data = yaml.safe_load((ROOT / "scenarios" / "nginx.yaml").read_text())
    data["workload"]["ready"] = {"http": {"path": "/missing", "status": 200}}
    data["timeouts"]["ready_s"] = 5
    path = tmp_path / "nginx-missing.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_explorer(
        "run", "--scenario-file", str(path), "--sides", "runc", "--repeat", "1", timeout=RUN_TIMEOUT_S
    )
    assert result.returncode == 4, result.stderr
    assert "waited for HTTP GET /missing expecting status 200; last saw status 404 Not Found" in result.stderr
    assert explorer_containers(docker_client()) == []


def test_image_flag_with_http_readiness(docker_backend, nginx_ref):
    result = run_explorer(
        "run",
        "--image",
        nginx_ref,
        "--port",
        "80",
        "--ready",
        "http",
        "--ready-timeout",
        "30",
        "--sides",
        "runc",
        "--repeat",
        "1",
        "--format",
        "json",
        "--no-load",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    http_readiness(doc)
    assert doc["scenario"]["processes"] == ["nginx"]  # read from the image's CMD
    assert doc["scenario"]["timeouts"]["ready_s"] == 30
    assert doc["sides"]["runc"]["visibility"]["visible_on_host"] is True
    assert explorer_containers(docker_client()) == []
