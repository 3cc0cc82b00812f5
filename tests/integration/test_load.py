"""The load phase against the real engines: the same redis-benchmark on the native reference, a
runc container, a gVisor container and a microVM; whose system calls reach the host, checked
against `ps -e` taken while the run ran and against `strace -f -c` on the same process over the
same window; a workload killed under load, and Ctrl-C during the load, leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from explorer import lifecycle, readiness
from explorer.images.container.source import docker_client
from explorer.load import native, rounds, trace
from explorer.model import LABEL_OWNER
from explorer.output import costs
from tests.conftest import (
    Explorer,
    backend_or_skip,
    containers_owned_by,
    ps_e,
    run_explorer,
    skip_or_fail_in_ci,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
GVISOR_ROLES = {"shim", "sandbox", "gofer", "stub", "proxy"}


@pytest.fixture(scope="module")
def counting_possible():
    why = trace.unavailable() or (None if shutil.which("redis-benchmark") else "redis-benchmark is not installed")
    if why:
        skip_or_fail_in_ci(f"the load phase cannot count here: {why}")


def watch(*args: str, timeout: float = 1200) -> tuple[subprocess.CompletedProcess, dict[int, set[str]]]:
    """Run the CLI, with `ps -e -o args` snapshots merged while it runs: PID -> every program it
    was seen running (a container's process is `runc init` before it becomes the workload)."""
    proc = Explorer(*args)
    seen: dict[int, set[str]] = {}
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        for pid, line in ps_e("args").items():
            seen.setdefault(pid, set()).add(Path(line.split(" ", 1)[0]).name)
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen


@pytest.fixture(scope="module")
def loaded(counting_possible, docker_backend, libvirt_backend, redis_artifact, tmp_path_factory):
    backend_or_skip("gvisor")
    out = tmp_path_factory.mktemp("load") / "result.json"
    done, seen = watch(
        "run", "redis", "--sides", "runc,gvisor,microvm", "--repeat", "1", "--load-seconds", "1", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    return {"doc": json.loads(out.read_text()), "text": done.stdout, "seen": seen}


def test_native_row_and_a_row_per_side_with_their_ratios(loaded):
    doc = loaded["doc"]
    native_rate = doc["load"]["native"]["summary"]["ops_s"]["median"]
    assert doc["load"]["native"]["status"] == "ok" and native_rate > 0
    _, rows = costs.costs_table(doc)
    by_name = {name: row for (name, _, _), row in zip(costs.rows_of(doc), rows, strict=True)}
    assert [row[0] for row in rows] == ["native process", "runc container", "gVisor container", "microVM (TCG)"]
    for name, side in doc["sides"].items():
        load = side["load"]
        assert load["status"] == "ok", (name, load)
        assert len(load["rounds"]) == 3 and all(r["ops"] > 0 for r in load["rounds"])
        assert by_name[name][2] == f"{load['summary']['ops_s']['median'] / native_rate:.2f}x"
    # the VM flagged wherever its figures show: the table, the notes, the document
    assert "microVM (TCG)" in loaded["text"] and "under TCG (software emulation)" in loaded["text"]
    assert doc["sides"]["microvm"]["load"]["note"].startswith("under TCG")
    assert doc["phases"]["reference_s"] > 0 and all(p["load_s"] > 0 for p in doc["phases"]["sides"].values())


def test_gvisor_calls_reach_the_host_from_its_sandbox_not_from_a_workload(loaded):
    counted = loaded["doc"]["sides"]["gvisor"]["load"]["traced"]
    roles = counted["by_role"]
    assert set(roles) <= GVISOR_ROLES and "workload" not in roles, roles
    assert roles["sandbox"]["calls"] > 0 and roles["sandbox"]["per_op"] > 1
    # the stubs run the workload's code: its system calls stop in the Sentry (PTRACE_SYSEMU)
    assert roles["stub"]["per_op"] < 0.1 * roles["sandbox"]["per_op"], roles
    # each counted process was what ps -e showed under that PID while the run ran
    want = {"sandbox": "runsc-sandbox", "gofer": "runsc-gofer", "proxy": "docker-proxy"}
    for proc in counted["processes"]:
        if proc["role"] in want:
            assert want[proc["role"]] in loaded["seen"].get(proc["pid"], set()), proc


def test_runc_workload_calls_are_served_by_the_host_kernel(loaded):
    counted = loaded["doc"]["sides"]["runc"]["load"]["traced"]
    workload = counted["by_role"]["workload"]
    assert workload["calls"] > 0 and workload["per_op"] >= 1.5  # a read and a write per request, at least
    assert {"read", "write"} <= {name for name, _ in workload["top"]}
    seccomp = {p["role"]: p["seccomp"] for p in counted["processes"]}
    assert seccomp["workload"] == "filter"  # Docker's default profile, on the workload only
    want = {"workload": "redis-server", "proxy": "docker-proxy", "shim": "containerd-shim-runc-v2"}
    for proc in counted["processes"]:
        assert want[proc["role"]] in loaded["seen"].get(proc["pid"], set()), (proc, loaded["seen"].get(proc["pid"]))


def test_the_vm_guest_work_reaches_the_host_only_as_its_vmm(loaded):
    counted = loaded["doc"]["sides"]["microvm"]["load"]["traced"]
    assert set(counted["by_role"]) == {"VMM"}
    assert counted["by_role"]["VMM"]["calls"] > 0
    (vmm,) = counted["processes"]
    assert "qemu-system-x86_64" in loaded["seen"][vmm["pid"]]


def strace_summary(text: str) -> set[str]:
    """The syscall names of `strace -c`'s table (its last row, `total`, is none)."""
    rows = re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(?:\d+\s+)?([a-z_0-9]+)$", text, re.MULTILINE)
    return {m[1] for m in rows} - {"total"}


def counted_with_strace(pid: int, endpoint: rounds.Endpoint, client, tool: list[str]) -> tuple[set[str], set[str]]:
    """explorer's counting and `strace -f -c -p` on the same process over the same load."""
    strace = subprocess.Popen(
        ["strace", "-f", "-c", "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    counting = trace.Counting({pid: "workload"})
    try:
        time.sleep(1.0)  # strace attached to every thread
        counting.start()
        rounds.run_client(endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, 1), 120, endpoint)
        counted = counting.stop()
    finally:
        counting.abort()
        strace.send_signal(signal.SIGINT)
        _, err = strace.communicate(timeout=60)
    return set(counted["syscalls"]), strace_summary(err)


@pytest.fixture
def strace_present():
    if shutil.which("strace") is None:
        skip_or_fail_in_ci("strace is not installed (apt-get install strace; scripts/setup-host does)")


def test_distinct_calls_match_strace_on_the_runc_workload(
    counting_possible, strace_present, docker_backend, redis_scenario, redis_artifact
):
    run_id = lifecycle.new_run_id()
    target = docker_backend.create(redis_scenario, redis_artifact, run_id, 0)
    try:
        readiness.wait_ready("redis", "127.0.0.1", target.host_port, time.monotonic() + 60)
        (pid,) = [p for p in docker_backend.host_pids(target)]
        endpoint = rounds.Endpoint("127.0.0.1", target.host_port, dict, lambda: None, lambda: "")
        client = redis_scenario.load.client()  # 2000 requests of each test: a fixed small workload
        ours, theirs = counted_with_strace(pid, endpoint, client, client.tool())
    finally:
        docker_backend.destroy(target)
        docker_backend.clean(run_id)
    assert ours and ours == theirs, ours ^ theirs


def test_distinct_calls_match_strace_on_the_native_reference(
    counting_possible, strace_present, docker_backend, redis_scenario, redis_artifact
):
    root = native.unpacked_root(redis_scenario, redis_artifact)
    reference = native.NativeReference(redis_scenario, redis_artifact, root)
    try:
        endpoint = reference.start()
        (pid,) = list(endpoint.pids())
        client = redis_scenario.load.client()
        ours, theirs = counted_with_strace(pid, endpoint, client, client.tool())
    finally:
        reference.stop()
    assert ours and ours == theirs, ours ^ theirs
    assert not [n for n in native_namespaces() if n == reference.netns]


def native_namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(native.NETNS_PREFIX)]


def load_clients(programs: tuple[str, ...] = ("redis-benchmark", "perf")) -> list[int]:
    """redis-benchmark and perf processes, by the program they run (explorer starts them by path)."""
    return [pid for pid, args in ps_e("args").items() if Path(args.split(" ", 1)[0]).name in programs]


def side_load_clients() -> list[int]:
    """Load clients in the host's network namespace: a side's load, not the native reference's
    (whose client runs in the reference's own namespace). perf, which counts both from the
    host, is left out."""
    ours = os.readlink("/proc/self/ns/net")
    found = []
    for pid in load_clients(("redis-benchmark",)):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") == ours:
                found.append(pid)
    return found


def start_loaded_run(*extra: str) -> subprocess.Popen:
    return Explorer("run", "redis", "--sides", "runc", "--repeat", "1", "--format", "json", *extra)


def wait_for(proc: subprocess.Popen, seen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if seen():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("when", ["native", "side"])
def test_ctrl_c_during_the_load_leaves_nothing(counting_possible, docker_backend, redis_artifact, when):
    """Ctrl-C while redis-benchmark runs, against the native reference or against the side: exit
    130, and no container, load client, perf, native server, namespace or copy is left."""
    proc = start_loaded_run("--load-seconds", "1")
    pid = proc.pid
    try:
        if when == "side":
            assert wait_for(proc, lambda: containers_owned_by(pid) and side_load_clients()), "the side was never loaded"
        else:
            assert wait_for(proc, lambda: load_clients() and native_namespaces()), "no load on the native reference"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert containers_owned_by(pid) == []
    assert load_clients() == []
    assert not [n for n in native_namespaces() if n.startswith(f"{native.NETNS_PREFIX}{pid}-")]
    assert not [a for a in ps_e("args").values() if "/.explorer/busybox" in a]  # no native server left


def test_a_workload_killed_under_load_is_a_failed_load_and_the_run_goes_on(
    counting_possible, docker_backend, redis_artifact
):
    proc = start_loaded_run("--load-seconds", "1")
    pid = proc.pid
    client = docker_client()
    try:
        assert wait_for(proc, lambda: containers_owned_by(pid) and side_load_clients()), "the side was never loaded"
        for container in client.containers.list(filters={"label": f"{LABEL_OWNER}={pid}"}):
            with contextlib.suppress(Exception):
                container.kill()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    side = json.loads(out)["sides"]["runc"]
    load = side["load"]
    assert load["status"] == "failed", load
    assert "died under the load" in load["reason"], load["reason"]
    assert "Ready to accept connections" in load["logs"]  # redis's own last log lines
    assert side["startup"]["repeats"] and side["visibility"]["visible_on_host"]  # the other figures kept
    assert containers_owned_by(pid) == [] and load_clients() == []


def test_no_load_skips_the_phase(docker_backend, redis_artifact, tmp_path: Path):
    out = tmp_path / "result.json"
    result = run_explorer("run", "redis", "--sides", "runc", "--repeat", "1", "--no-load", "--output", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert "load" not in doc and "load" not in doc["sides"]["runc"]
    assert "What isolation costs" not in result.stdout
