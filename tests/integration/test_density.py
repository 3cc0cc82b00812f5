"""`explorer density` against the real engines, kept small (CI has 2 cores): every instance
ready, a fit per side, the marginal PSS of a runc container bracketed by one container measured
independently (psutil on the processes `docker inspect` names), and nothing left afterwards,
also after SIGINT mid-run (checked with `docker ps -a` and `virsh list --all`)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from explorer.backends.base import LABEL_MANAGED, LABEL_RUN
from explorer.errors import EXIT_INTERRUPTED
from tests.conftest import ROOT, explorer_argv, qemu_processes, run_explorer

pytestmark = pytest.mark.slow
MIB = 1024 * 1024
# The marginal cost of one more container lies between what one holds privately (its USS: what
# it shares with the others is counted once, in the fixed cost) and all it holds (its PSS).
MARGINAL_LOW, MARGINAL_HIGH = 0.8, 1.15  # x USS, x PSS of one container alone


def docker_ps(run_id: str) -> list[str]:
    """`docker ps -a` (the CLI) filtered by explorer's run label."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label={LABEL_RUN}={run_id}", "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return out.split()


def virsh_names(run_id: str) -> list[str]:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [name for name in out.split() if f"-{run_id}-" in name]


def density(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "density.json"
    result = run_explorer("density", "redis", *args, "--output", str(out), timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def one_container_alone(image: str) -> dict[str, int]:
    """PSS and USS of one redis container (its containerd-shim and workload processes, found
    from `docker inspect`'s State.Pid), started and removed with the docker CLI."""
    name = f"explorer-density-single-{int(time.time())}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", f"{LABEL_MANAGED}=true", "-p", "127.0.0.1::6379",
                    image], check=True, capture_output=True, timeout=60)
    try:
        time.sleep(2)  # redis settled: its memory no longer moves
        state = json.loads(subprocess.run(["docker", "inspect", name], check=True, capture_output=True,
                                          timeout=60).stdout)[0]["State"]
        workload = psutil.Process(state["Pid"])
        procs = [workload, *workload.children(recursive=True), workload.parent()]
        infos = [p.memory_full_info() for p in procs]
        return {"pss_bytes": sum(i.pss for i in infos), "uss_bytes": sum(i.uss for i in infos)}
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True, timeout=60)


@pytest.mark.docker
def test_runc_density_fits_and_the_marginal_cost_is_one_container_s(docker_backend, redis_artifact, tmp_path):
    doc = density(tmp_path, "--sides", "runc", "--count", "6", "--step", "2")
    side = doc["sides"]["runc"]
    assert side["count"] == 6 and side["stopped"]["by"] == "count"
    assert [s["n"] for s in side["steps"]] == [2, 4, 6] and all(len(s["ready_s"]) == 2 for s in side["steps"])
    assert side["fit_basis"] == "least squares" and side["fits"]["pss"]["points"] == 3
    assert all(s["processes"] >= 2 * s["n"] for s in side["steps"])  # a shim and redis-server each
    assert docker_ps(doc["run_id"]) == [] and side["removal"]["errors"] == []
    alone = one_container_alone(redis_artifact.ref)
    marginal = side["marginal_pss_bytes"]
    assert MARGINAL_LOW * alone["uss_bytes"] <= marginal <= MARGINAL_HIGH * alone["pss_bytes"], (marginal, alone)


@pytest.mark.docker
def test_sigint_mid_density_run_leaves_nothing(docker_backend, redis_artifact):
    proc = subprocess.Popen(explorer_argv("density", "redis", "--sides", "runc", "--count", "10", "--step", "2"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = next(m[1] for line in proc.stderr if (m := re.search(r"density: run ([0-9a-f]{8})", line)))
        deadline = time.monotonic() + 120
        while len(docker_ps(run_id)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(docker_ps(run_id)) >= 3, "the density run did not get to 3 containers"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert docker_ps(run_id) == []


@pytest.mark.libvirt
@pytest.mark.docker
def test_microvm_density_with_its_tcg_cache_apart(libvirt_backend, docker_backend, redis_artifact, tmp_path):
    doc = density(tmp_path, "--sides", "microvm", "--count", "2", "--step", "1")
    side = doc["sides"]["microvm"]
    assert side["count"] == 2 and [len(s["ready_s"]) for s in side["steps"]] == [1, 1]
    assert side["marginal_pss_bytes"] > 0 and "residual_pss_bytes" in side
    if side["accel"] == "tcg":
        assert all(0 < s["tcg_cache_pss_bytes"] < s["pss_bytes"] for s in side["steps"])
    run_id = doc["run_id"]
    assert virsh_names(run_id) == [] and qemu_processes(f"-{run_id}-") == []
    assert not list(Path(tempfile.gettempdir()).glob(f"explorer-vm-{run_id}-*"))
