"""Bad input and interruptions: a clear error, the documented exit code, nothing left behind."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from explorer.dockerd import docker_client
from explorer.errors import (
    EXIT_NOT_READY,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from tests.conftest import ROOT, Explorer, explorer_containers, run_explorer

pytestmark = pytest.mark.docker


def leftovers(docker_backend) -> list[str]:
    """explorer's containers (label io.explorer.managed), of any run."""
    return explorer_containers(docker_client())


def scenario_file(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "redis.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_readiness_timeout_exits_4_with_logs_and_leaves_nothing(docker_backend, redis_artifact, tmp_path):
    # Redis never answers a PostgreSQL startup message: the run must time out, not hang.
    path = scenario_file(tmp_path, workload__ready="postgres", timeouts={"ready_s": 3})
    result = run_explorer("run", "--scenario-file", str(path), "--sides", "runc", "--repeat", "1")
    assert result.returncode == EXIT_NOT_READY, result.stderr
    assert "did not answer a postgres readiness check" in result.stderr
    assert "Ready to accept connections" in result.stderr  # the container's last log lines
    assert leftovers(docker_backend) == []


def test_workload_that_exits_fails_fast_with_its_logs(docker_backend, redis_artifact, tmp_path):
    path = scenario_file(tmp_path, workload__command=["redis-server", "--no-such-option"])
    started = time.monotonic()
    result = run_explorer("run", "--scenario-file", str(path), "--sides", "runc", "--repeat", "1")
    assert result.returncode == 1, result.stderr
    assert "exited with code" in result.stderr and "no-such-option" in result.stderr
    assert time.monotonic() - started < 50  # well before the 60 s readiness timeout
    assert leftovers(docker_backend) == []


def signal_mid_run(docker_backend, signum: int) -> tuple[int, str]:
    """Start a long run, send `signum` once its first container exists; (exit code, stderr)."""
    proc = Explorer("run", "redis", "--sides", "runc", "--repeat", "50")
    try:
        deadline = time.monotonic() + 60
        while not leftovers(docker_backend) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftovers(docker_backend), "no container appeared"
        time.sleep(0.3)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test itself failed: stop the run the way a user would
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_mid_run_exits_128_plus_signal_and_leaves_nothing(docker_backend, redis_artifact, signum):
    code, err = signal_mid_run(docker_backend, signum)
    assert code == 128 + signum, err  # 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP
    assert "interrupted" in err and "everything this run created was removed" in err
    assert leftovers(docker_backend) == []


def test_missing_image_that_cannot_be_pulled(docker_backend, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "nowhere",
                "workload": {
                    "image": "explorer-test/does-not-exist:1",
                    "port": 1234,
                    "processes": ["x"],
                    "ready": "tcp",
                },
            }
        )
    )
    result = run_explorer("run", "--scenario-file", str(path), "--sides", "runc", timeout=180)
    assert result.returncode == 1
    assert "explorer-test/does-not-exist:1" in result.stderr and "docker load" in result.stderr
    assert leftovers(docker_backend) == []


def test_engine_not_running_exits_3_with_the_fix(tmp_path):
    result = run_explorer("run", "redis", "--sides", "runc", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "Docker daemon" in result.stderr and "scripts/setup-host" in result.stderr


def test_unknown_scenario_exits_2():
    result = run_explorer("run", "no-such-scenario", "--sides", "runc")
    assert result.returncode == EXIT_USAGE
    assert "unknown scenario 'no-such-scenario'" in result.stderr and "redis" in result.stderr
