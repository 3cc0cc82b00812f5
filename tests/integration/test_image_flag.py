"""`explorer run --image REF`: any local image, measured without a scenario file, checked
against `docker image inspect` and `docker ps`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import containers_of, docker_image_inspect, run_explorer

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def redis_tag(redis_artifact) -> str:
    """The offline redis image (what `explorer build redis` reports: test_build_cli checks that)."""
    assert redis_artifact.ref.startswith("explorer/redis:")
    return redis_artifact.ref


def run_image(tag: str, *extra: str) -> dict:
    result = run_explorer(
        "run",
        "--image",
        tag,
        "--port",
        "6379",
        "--ready",
        "redis",
        *extra,
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
    return json.loads(result.stdout)


def test_image_flag_measures_a_local_image(redis_tag):
    result = run_image(redis_tag)
    image = docker_image_inspect(redis_tag)
    assert result["scenario"]["source"] == "--image"
    assert result["scenario"]["image"] == redis_tag
    # The process name was read from the image's own CMD, not given.
    assert image["Config"]["Cmd"][0] == "redis-server" and not image["Config"]["Entrypoint"]
    assert result["scenario"]["processes"] == ["redis-server"]
    side = result["sides"]["runc"]
    assert side["visibility"]["visible_on_host"] is True
    assert {p["name"] for p in side["visibility"]["workload_processes"]} >= {"redis-server"}
    assert side["image"]["image_bytes"] == image["Size"]
    assert side["startup"]["summary"]["ready_s"]["n"] == 1
    assert containers_of(result["scenario"]["name"]) == []


def test_process_flag_is_taken_as_given(redis_tag):
    """A name that is not running is never judged "not visible" (a confident wrong verdict):
    the run fails, naming what does run as the container's PID 1."""
    result = run_explorer(
        "run",
        "--image",
        redis_tag,
        "--port",
        "6379",
        "--ready",
        "redis",
        "--process",
        "no-such-process",
        "--sides",
        "runc",
        "--repeat",
        "1",
        "--format",
        "json",
        "--no-load",
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "no process named no-such-process" in result.stderr
    assert "PID 1 is redis-server" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert containers_of("redis-" + redis_tag.split(":")[1]) == []  # the name image_scenario() gives it
