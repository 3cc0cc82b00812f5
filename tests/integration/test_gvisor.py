"""The gVisor side against the real engine and runsc, checked with independent tools: `ps -e`
polled during the run, `docker info`, `uname -r`."""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import time

import pytest

from explorer.dockerd import docker_client
from explorer.model import LABEL_RUN
from tests.conftest import (
    Explorer,
    backend_or_skip,
    containers_owned_by,
    explorer_containers,
    ps_e,
    run_explorer,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def gvisor_backend():
    return backend_or_skip("gvisor")


def runsc_processes() -> dict[int, str]:
    """`ps -e -o args` lines of runsc's host processes (their comm is `exe`)."""
    return {pid: args for pid, args in ps_e("args").items() if args.split(" ", 1)[0].startswith("runsc-")}


@pytest.fixture(scope="module")
def gvisor_run(gvisor_backend, redis_artifact):
    """One `explorer run redis --sides gvisor`, with `ps -e` polled every 20 ms while it runs."""
    before = set(runsc_processes())
    proc = Explorer("run", "redis", "--sides", "gvisor", "--repeat", "2", "--format", "json", "--no-load")
    comms: set[str] = set()
    sandboxes: set[int] = set()
    while proc.poll() is None:
        comms |= set(ps_e("comm").values())
        sandboxes |= {pid for pid, args in runsc_processes().items() if args.startswith("runsc-sandbox")}
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return {"doc": json.loads(out), "comms": comms, "sandboxes": sandboxes - before, "before": before}


def test_docker_info_lists_the_runsc_runtime(gvisor_backend):
    runtimes = json.loads(
        subprocess.run(
            ["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )
    assert "runsc" in runtimes
    assert "--platform=ptrace" in runtimes["runsc"].get("runtimeArgs", [])


def test_ps_never_lists_the_workload_while_gvisor_runs_it(gvisor_run):
    assert "redis-server" not in gvisor_run["comms"]
    assert gvisor_run["sandboxes"], "no runsc-sandbox process was seen during the run"
    side = gvisor_run["doc"]["sides"]["gvisor"]
    assert side["kind"] == "container" and side["name"] == "gvisor"
    assert side["visibility"]["visible_on_host"] is False
    assert side["visibility"]["workload_processes"] == []
    roles = {p["role"] for p in side["visibility"]["runtime_processes"]}
    assert {"shim", "sandbox", "gofer"} <= roles
    (sandbox,) = [p for p in side["visibility"]["runtime_processes"] if p["role"] == "sandbox"]
    assert sandbox["host_pid"] in gvisor_run["sandboxes"]  # the one ps saw, found by command line
    assert side["memory"]["runtime"]["pss_bytes"] > 0 and side["memory"]["workload"]["processes"] == 0


def test_the_kernel_inside_is_not_the_hosts(gvisor_run):
    uname_r = subprocess.run(["uname", "-r"], capture_output=True, text=True, check=True).stdout.strip()
    kernel = gvisor_run["doc"]["sides"]["gvisor"]["kernel"]
    assert kernel["host_release"] == uname_r == platform.release()
    assert kernel["guest_release"] and kernel["guest_release"] != uname_r
    assert kernel["shared"] is False
    if kernel["guest_boot_id"] is None:  # runsc 20221219 has no boot_id file
        assert kernel["basis"].startswith("release")


def test_claims_per_side_say_where_gvisor_departs(gvisor_run):
    claims = {c["id"]: c for c in gvisor_run["doc"]["claims"]}
    for claim_id in ("visibility", "kernel"):
        verdict = claims[claim_id]["sides"]["gvisor"]
        assert verdict["verdict"] == "not reproduced", verdict
    assert "its own kernel" in claims["kernel"]["sides"]["gvisor"]["evidence"]


def test_nothing_of_the_run_is_left(gvisor_backend, gvisor_run):
    run_id = gvisor_run["doc"]["run_id"]
    assert explorer_containers(docker_client(), f"{LABEL_RUN}={run_id}") == []
    assert not set(runsc_processes()) - gvisor_run["before"]


def test_a_failed_gvisor_start_leaves_no_sandbox(gvisor_backend, redis_artifact, tmp_path):
    before = set(runsc_processes())
    path = tmp_path / "exits.yaml"
    path.write_text(
        "name: exits-at-once\n"
        f"workload: {{image: '{redis_artifact.ref}', command: [/bin/false], port: 6379,"
        " processes: ['false'], ready: redis}\n"
        "timeouts: {ready_s: 20}\n"
    )
    result = run_explorer("run", "--scenario-file", str(path), "--sides", "gvisor", "--repeat", "1", timeout=120)
    assert result.returncode != 0
    assert "exited" in result.stderr and "Traceback" not in result.stderr
    assert not set(runsc_processes()) - before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_while_the_guest_view_is_taken_ends_the_run(gvisor_backend, redis_artifact, signum):
    """The guest view is a `docker exec`, which runs as `runsc-exec` on the host: the signal is
    sent while it runs. The run ends with 128 + the signal (never a report with an 'unknown'
    kernel and exit 0), and neither a container nor a runsc process of it is left."""
    hits = 0
    for _ in range(5):
        proc, pid = start_run()
        seen = False
        while proc.poll() is None and not seen:
            seen = any(args.startswith("runsc-exec") for args in ps_e("args").values())
            time.sleep(0.005)
        if seen:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        assert containers_owned_by(pid) == [] and not runsc_processes()
        if not seen:
            assert proc.returncode == 0, err
            continue
        hits += 1
        assert proc.returncode == 128 + signum, err
        assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in err
    assert hits, "the guest view was never seen running in 5 runs"


def start_run() -> tuple[subprocess.Popen, int]:
    proc = Explorer("run", "redis", "--sides", "gvisor", "--repeat", "1", "--format", "json", "--no-load")
    return proc, proc.pid
