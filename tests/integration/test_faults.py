"""Faults from outside a run: a build interrupted or timed out, kill -9 followed by
`explorer clean` (container, VM and build side), `clean` while a run is live, and a result
that cannot be saved at the end. Each checked with independent tools (docker ps, virsh, ps)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from explorer.dockerd import docker_client
from explorer.errors import EXIT_INTERRUPTED
from tests.conftest import (
    ROOT,
    Explorer,
    clean_is_safe,
    containers_owned_by,
    partials_of,
    run_explorer,
)

pytestmark = pytest.mark.docker
# `explorer clean` in these tests looks at a cache of its own: the shared one is others' too.
EMPTY_CACHE = {"EXPLORER_CACHE": "/nonexistent/explorer-test-cache"}


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:

    return Explorer(*args, env=env)


def wait_for(what: str, check, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def processes_mentioning(text: str) -> list[str]:
    """`ps -e` lines whose command line or environment mentions `text` (a build's cache dir)."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if text in " ".join(proc.info["cmdline"] or []) or text in str(proc.environ().get("TMPDIR", "")):
                found.append(f"{proc.info['pid']} {proc.info['name']}")
        except psutil.Error:
            continue
    return found


def cold_build(cache: Path) -> subprocess.Popen:
    """`explorer build redis --only container` with an empty cache: mmdebstrap really runs."""
    proc = start("build", "redis", "--sides", "runc", env={"EXPLORER_CACHE": str(cache)})
    wait_for("mmdebstrap to start", lambda: [p for p in processes_mentioning(str(cache)) if "mmdebstrap" in p])
    time.sleep(3)  # well into it: apt and dpkg run as its children
    return proc


def assert_build_left_nothing(cache: Path, pid: int) -> None:
    assert processes_mentioning(str(cache)) == []
    assert partials_of(pid, cache) == []
    assert list((cache / "rootfs").glob("*")) == []
    assert not list(Path("/tmp").glob(f"explorer-build-{pid}-*"))


def test_a_build_interrupted_by_sigterm_ends_mmdebstrap_and_leaves_no_partial(docker_backend, tmp_path):
    cache = tmp_path / "cache"
    proc = cold_build(cache)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert_build_left_nothing(cache, proc.pid)


def test_a_build_timeout_ends_mmdebstrap_with_all_its_processes(docker_backend, tmp_path):
    cache = tmp_path / "cache"
    scenario = tmp_path / "s.yaml"
    scenario.write_text((ROOT / "scenarios" / "redis.yaml").read_text().replace("build_s: 900", "build_s: 4"))
    proc = start("build", "--scenario-file", str(scenario), "--sides", "runc", env={"EXPLORER_CACHE": str(cache)})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "did not finish in 4s; it was stopped with all its processes" in err and "Traceback" not in err
    assert_build_left_nothing(cache, proc.pid)


def test_kill_9_mid_build_then_clean_removes_the_partials(docker_backend, tmp_path):
    cache = tmp_path / "cache"
    proc = cold_build(cache)
    proc.kill()  # SIGKILL: nothing runs in explorer; mmdebstrap gets its parent-death SIGTERM
    stop(proc)
    wait_for("the orphaned build to end", lambda: not processes_mentioning(str(cache)), 60)
    left = partials_of(proc.pid, cache)
    assert left, "kill -9 left no partial to clean (the test proves nothing)"
    clean_is_safe(docker_client())
    result = run_explorer("clean", env={"EXPLORER_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    for path in left:
        assert f"removed partial build {path}" in result.stdout
    assert_build_left_nothing(cache, proc.pid)


def test_kill_9_then_clean_removes_the_container(docker_backend, redis_artifact):
    proc = start("run", "redis", "--sides", "runc", "--repeat", "50")
    try:
        names = wait_for("a container", lambda: containers_owned_by(proc.pid))
        proc.kill()
    finally:
        stop(proc)
    assert containers_owned_by(proc.pid) == names  # kill -9: nothing could remove it
    clean_is_safe(docker_client())
    result = run_explorer("clean", env=EMPTY_CACHE)
    assert result.returncode == 0, result.stderr
    assert f"removed container {names[0]}" in result.stdout
    assert containers_owned_by(proc.pid) == []


def test_clean_during_a_live_run_spares_it(docker_backend, redis_artifact):
    proc = start("run", "redis", "--sides", "runc", "--repeat", "3", "--format", "json", "--no-load")
    try:
        names = wait_for("a container", lambda: containers_owned_by(proc.pid))
        clean_is_safe(docker_client())
        result = run_explorer("clean", env=EMPTY_CACHE)
        out, err = proc.communicate(timeout=300)
    finally:
        stop(proc)
    assert result.returncode == 0, result.stderr
    assert names[0] not in result.stdout
    assert proc.returncode == 0, err
    assert "Traceback" not in err and '"run_id"' in out
    assert containers_owned_by(proc.pid) == []


def test_a_result_that_cannot_be_saved_at_the_end_is_still_reported(docker_backend, redis_artifact, tmp_path):
    where = tmp_path / "gone"
    where.mkdir()
    proc = start("run", "redis", "--sides", "runc", "--repeat", "2", "--output", str(where / "r.json"), "--no-load")
    try:
        wait_for("a container", lambda: containers_owned_by(proc.pid))
        where.rmdir()  # checked at the start; gone by the end
        out, err = proc.communicate(timeout=300)
    finally:
        stop(proc)
    assert proc.returncode == 1, err
    assert "Claims" in out  # the report, in full
    assert f"could not be written to {where / 'r.json'}" in err and "Traceback" not in err


@pytest.mark.libvirt
@pytest.mark.slow
def test_kill_9_then_clean_removes_the_vm(docker_backend, libvirt_backend):
    from tests.integration.test_libvirt_backend import assert_nothing_left, virsh

    def owned() -> str | None:  # other VMs may start meanwhile: the domain's metadata names its owner
        for domain in virsh("list", "--name").split():
            if domain.startswith("explorer-redis-"):
                try:
                    label = virsh("metadata", domain, "--uri", "https://explorer.invalid/libvirt/1")
                except subprocess.CalledProcessError:
                    continue
                if f'pid="{proc.pid}"' in label:
                    return domain
        return None

    proc = start("run", "redis", "--sides", "microvm", "--repeat", "1")
    try:
        name = wait_for("a VM", owned, 300)
        time.sleep(0.5)
        proc.kill()
    finally:
        stop(proc)
    assert name in virsh("list", "--name").split()  # kill -9: nothing could remove it
    clean_is_safe(docker_client())
    result = run_explorer("clean", env=EMPTY_CACHE)
    assert result.returncode == 0, result.stderr
    assert f"removed domain {name}" in result.stdout and "removed work dir" in result.stdout
    assert_nothing_left(name.split("-")[-2])


def test_a_container_removed_under_a_run_fails_it_without_a_traceback(docker_backend, redis_artifact):
    """`docker rm -f` (or an older explorer's clean) mid-run: an error message, never a traceback."""
    proc = start("run", "redis", "--sides", "runc", "--repeat", "50")
    try:
        names = wait_for("a container", lambda: containers_owned_by(proc.pid))
        subprocess.run(["docker", "rm", "-f", names[0]], capture_output=True, check=False, timeout=60)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # it was removed as its start ended: the run went on
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode in (1, EXIT_INTERRUPTED), err
    assert "Traceback" not in err and err.startswith("Error: ")
    assert containers_owned_by(proc.pid) == []


@pytest.mark.libvirt
@pytest.mark.slow
def test_a_vm_with_too_little_memory_says_it_likely_ran_out(docker_backend, libvirt_backend, tmp_path):
    from tests.integration.test_libvirt_backend import virsh

    text = (ROOT / "scenarios" / "redis.yaml").read_text()
    scenario = tmp_path / "small.yaml"
    scenario.write_text(text.replace("memory_mib: 512", "memory_mib: 64").replace("vm_ready_s: 300", "vm_ready_s: 15"))
    result = run_explorer(
        "run", "--scenario-file", str(scenario), "--sides", "microvm", "--repeat", "1", "--no-load", timeout=300
    )
    assert result.returncode in (1, 4), result.stderr
    assert "likely ran out of memory" in result.stderr and "vm.memory_mib=64" in result.stderr
    assert "Traceback" not in result.stderr
    assert not [
        d for d in virsh("list", "--all", "--name").split() if d.startswith("explorer-redis-") and d in result.stderr
    ]
