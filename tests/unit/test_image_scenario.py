"""`explorer run --image`: the scenario made from flags, the process name read from the image,
the usage errors, and a pull that cannot hang (no daemon needed: a fake Docker client)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from docker.errors import ImageNotFound

from explorer.errors import EXIT_USAGE, BuildError, UsageError
from explorer.images.container import docker_image
from explorer.scenario import image_scenario, workload_process
from tests.conftest import run_explorer


@pytest.mark.parametrize(
    ("argv", "process"),
    [
        (["docker-entrypoint.sh", "mongod"], "mongod"),  # the official mongo image
        (["redis-server", "--bind", "0.0.0.0"], "redis-server"),
        (["/usr/lib/postgresql/15/bin/postgres", "-D", "/data"], "postgres"),
        (["/usr/bin/tini", "-p", "SIGTERM", "--", "/usr/local/bin/app", "-x"], "app"),
        (["dumb-init", "--", "/docker-entrypoint.sh", "nginx", "-g", "daemon off;"], "nginx"),
        (["gosu", "redis", "redis-server"], "redis-server"),
        (["env", "LANG=C", "memcached"], "memcached"),
        (["/bin/sh", "-c", "exec mongod"], None),  # only the shell knows
        (["docker-entrypoint.sh"], None),
        ([], None),
    ],
)
def test_workload_process_from_entrypoint_and_cmd(argv, process):
    assert workload_process(argv) == process


def test_image_scenario_names_where_the_process_came_from():
    derived = image_scenario("mongo:7.0", 27017, "mongodb", argv=("docker-entrypoint.sh", "mongod"))
    assert derived.workload.processes == ("mongod",)
    assert "ENTRYPOINT + CMD" in derived.description
    assert derived.name == "mongo-7-0" and derived.source == "--image"
    given = image_scenario("mongo:7.0", 27017, "mongodb", processes=("mongod", "numactl"))
    assert given.workload.processes == ("mongod", "numactl")
    assert "--process" in given.description


def test_image_scenario_refuses_to_guess():
    with pytest.raises(UsageError, match="cannot tell the workload's process") as caught:
        image_scenario("busybox", 8080, "tcp", argv=("sh", "-c", "httpd -f"))
    assert "--process" in caught.value.hint


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["redis", "--image", "x:1", "--port", "1", "--ready", "tcp"], "not both"),
        (["--scenario-file", "s.yaml", "--image", "x:1", "--port", "1", "--ready", "tcp"], "not both"),
        (["--image", "x:1", "--port", "1"], "--image, --port and --ready go together"),
        (["--port", "6379", "--ready", "redis"], "--image, --port and --ready go together"),
        (["--image", "no spaces", "--port", "1", "--ready", "tcp", "--process", "p"], "not an image reference"),
    ],
)
def test_image_flag_usage_errors_exit_2(args, message):
    result = run_explorer("run", *args, timeout=60)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def fake_client(pull):
    def get(ref):
        raise ImageNotFound(f"No such image: {ref}")

    return SimpleNamespace(images=SimpleNamespace(get=get), api=SimpleNamespace(pull=pull))


def test_a_stalled_pull_gives_up_with_the_ways_out(monkeypatch):
    monkeypatch.setattr(docker_image, "PULL_STALL_S", 0.3)
    release = threading.Event()

    def stalled_pull(repository, tag, stream, decode):
        release.wait(10)  # a registry that never answers
        yield from ()

    started = time.monotonic()
    try:
        with pytest.raises(BuildError, match="'mongo:7.0' is not present and could not be pulled") as caught:
            docker_image._existing_or_pulled(fake_client(stalled_pull), "mongo:7.0")
    finally:
        release.set()
    assert time.monotonic() - started < 8  # the stall limit (0.3 s), not the stalled pull's 10 s
    assert "no progress for 0.3 s" in str(caught.value)
    assert "docker load -i" in caught.value.hint and "offline scenario" in caught.value.hint


def test_stall_limit_applies_between_messages():
    release = threading.Event()

    def slow_then_silent(repository, tag, stream, decode):
        assert (repository, tag) == ("registry.example:5000/team/db", "2")
        yield {"status": "Pulling from team/db"}
        release.wait(10)

    started = time.monotonic()
    try:
        with pytest.raises(BuildError, match="no progress for 0.3 s"):
            docker_image._pull(fake_client(slow_then_silent), "registry.example:5000/team/db:2", stall_s=0.3)
    finally:
        release.set()
    assert time.monotonic() - started < 8  # the stall limit (0.3 s), not the stalled pull's 10 s


def test_an_error_inside_the_pull_stream_is_raised():
    def denied(repository, tag, stream, decode):
        assert tag == "latest"
        yield {"status": "Pulling from library/mongo"}
        yield {"error": "pull access denied for mongo"}

    with pytest.raises(BuildError, match="pull access denied"):
        docker_image._pull(fake_client(denied), "mongo", stall_s=5)
