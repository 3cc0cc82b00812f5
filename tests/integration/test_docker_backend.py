"""The container side against the real engine, checked with independent tools (ps, docker CLI)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from explorer import lifecycle
from explorer.dockerd import docker_client
from explorer.model import LABEL_RUN
from tests.conftest import (
    Explorer,
    docker_image_inspect,
    explorer_containers,
    ps_e,
    run_explorer,
    running_container,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="class")
def running_redis(docker_backend, redis_scenario, redis_artifact):
    """One redis container for the read-only tests of TestOneRunningRedis, removed at the class's
    end (before the tests below, which check that no explorer container is left)."""
    container = running_container(docker_backend, redis_scenario, redis_artifact)
    target = next(container)
    yield target
    next(container, None)  # destroyed, its run cleaned
    assert explorer_containers(docker_client(), f"{LABEL_RUN}={target.run_id}") == []


@pytest.fixture(scope="class")
def probed(docker_backend, redis_scenario, redis_artifact, running_redis) -> dict:
    """Every probe on running_redis, once, as a run probes it."""
    return lifecycle.probe(docker_backend, redis_scenario, redis_artifact, running_redis)


class TestOneRunningRedis:
    """Read-only checks of one redis container, started and probed once."""

    def test_workload_pid_is_in_host_ps_and_differs_inside(self, running_redis, probed):
        vis = probed["visibility"]
        host_table = ps_e("comm")
        (redis,) = [p for p in vis["workload_processes"] if p["name"] == "redis-server"]
        assert host_table.get(redis["host_pid"]) == "redis-server"
        assert redis["pid_inside"] != redis["host_pid"]
        # Inside the container, the same process stands under its namespace PID.
        top = (
            running_redis.held.container.exec_run(["cat", f"/proc/{redis['pid_inside']}/comm"]).output.decode().strip()
        )
        assert top == "redis-server"
        assert redis["parents"][-1]["name"].startswith("containerd-shim")
        assert vis["visible_on_host"] is True

    def test_boot_id_is_the_hosts(self, running_redis, probed):
        k = probed["kernel"]
        inside = (
            running_redis.held.container.exec_run(["cat", "/proc/sys/kernel/random/boot_id"]).output.decode().strip()
        )
        assert Path("/proc/sys/kernel/random/boot_id").read_text().strip() == inside == k["guest_boot_id"]
        assert k["shared"] is True

    def test_image_size_equals_docker_image_inspect(self, redis_artifact, probed):
        assert probed["image"]["image_bytes"] == docker_image_inspect(redis_artifact.ref)["Size"]

    def test_port_is_published_on_loopback_only(self, running_redis):
        running_redis.held.container.reload()
        bindings = running_redis.held.container.attrs["NetworkSettings"]["Ports"]["6379/tcp"]
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
        assert running_redis.held.container.attrs["HostConfig"]["Privileged"] is False
        assert not running_redis.held.container.attrs["Mounts"]


def test_cli_run_json_matches_ps_during_the_run(docker_backend, redis_artifact):
    """While `explorer run` runs, ps -e must list the redis-server PID it later reports."""
    proc = Explorer("run", "redis", "--sides", "runc", "--repeat", "3", "--format", "json", "--no-load")
    seen: set[int] = set()
    while proc.poll() is None:
        seen |= {pid for pid, comm in ps_e("comm").items() if comm == "redis-server"}
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    side = json.loads(out)["sides"]["runc"]
    (redis,) = [p for p in side["visibility"]["workload_processes"] if p["name"] == "redis-server"]
    assert redis["host_pid"] in seen
    assert redis["pid_inside"] != redis["host_pid"]
    assert side["kernel"]["guest_boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert len(side["startup"]["repeats"]) == 3
    assert explorer_containers(docker_client()) == []


def test_postgres_shows_several_server_processes_on_host(docker_backend):
    result = run_explorer(
        "run", "postgres", "--sides", "runc", "--repeat", "1", "--format", "json", "--load-seconds", "1", timeout=900
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    vis = doc["sides"]["runc"]["visibility"]
    postgres = [p for p in vis["workload_processes"] if p["name"] == "postgres"]
    assert len(postgres) >= 4, postgres  # postmaster, checkpointer, background writer, walwriter, ...
    assert len({p["host_pid"] for p in postgres}) == len(postgres)
    assert all(p["user"] == postgres[0]["user"] for p in postgres)
    # the standard load: pgbench from the image's own rootfs, select-only, against both
    for load in (doc["sides"]["runc"]["load"], doc["load"]["native"]):
        assert load["status"] == "ok", load
        assert load["client"].startswith("pgbench ") and load["summary"]["ops_s"]["median"] > 0
        # a backend forked per client connection: its calls count with the workload (inherited)
        workload = load["traced"]["by_role"]["workload"]
        assert {"recvfrom", "sendto"} <= set(load["traced"]["syscalls"]) and workload["per_op"] > 1
    assert explorer_containers(docker_client()) == []
