"""The table of bad inputs that need Docker (and libvirt for the VM's limits): exit code, a
message naming the field or the cause, no traceback, and nothing left behind: no container,
partial or work dir carrying the CLI's PID, no build process."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import yaml

from explorer.dockerd import docker_client
from explorer.errors import EXIT_NOT_READY, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.conftest import containers_owned_by, partials_of, run_explorer_traced
from tests.unit.test_bad_inputs import Case, redis

pytestmark = pytest.mark.docker

RUN = ("run", "--scenario-file", "{file}", "--sides", "runc", "--repeat", "1", "--no-load")
BUILD = ("build", "--scenario-file", "{file}", "--sides", "runc")
HUGE = 2**40  # MiB: no host has it
CASES = [
    Case(
        "process-name-matches-nothing",
        RUN,
        ("no process named nosuchproc", "PID 1 is redis-server"),
        code=1,
        scenario=redis(**{"workload.processes": ["nosuchproc"]}),
    ),
    Case(
        "workload-exits-at-once",
        RUN,
        ("exited with code 7", "bye-from-the-workload"),
        code=1,
        scenario=redis(**{"workload.command": ["sh", "-c", "echo bye-from-the-workload; exit 7"]}),
    ),
    Case(
        "workload-exits-silently",
        RUN,
        ("exited with code 0", "it printed nothing"),
        code=1,
        scenario=redis(**{"workload.command": ["true"]}),
    ),
    Case(
        "workload-bad-option",
        RUN,
        ("exited with code 1", "no-such-option"),
        code=1,
        scenario=redis(**{"workload.command": ["redis-server", "--no-such-option"]}),
    ),
    Case(
        "wrong-readiness-kind",
        RUN,
        ("did not answer a postgres readiness check", "Ready to accept connections"),
        code=EXIT_NOT_READY,
        scenario=redis(**{"workload.ready": "postgres", "timeouts.ready_s": 3}),
    ),
    Case(
        "vm-memory-too-large",
        ("run", "--scenario-file", "{file}", "--repeat", "1", "--no-load"),
        ("vm.memory_mib", f"asks for a {HUGE} MiB VM"),
        scenario=redis(**{"vm.memory_mib": HUGE}),
    ),
    Case(
        "unknown-package",
        BUILD,
        ("has no package no-such-package-explorer", "workload.build.packages"),
        code=1,
        scenario=redis(**{"workload.build.packages": ["redis-server", "no-such-package-explorer"]}),
    ),
    Case(
        "unknown-suite",
        BUILD,
        ("the mirror has no suite 'nosuchsuite'", "workload.build.suite"),
        code=1,
        scenario=redis(**{"workload.build.suite": "nosuchsuite"}),
    ),
    Case(
        "engine-down-run",
        ("run", "redis", "--sides", "runc", "--no-load"),
        ("Docker daemon", "scripts/setup-host"),
        code=EXIT_UNAVAILABLE,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    ),
    Case(
        "engine-down-clean-cache",
        ("clean", "--cache"),
        ("could not clean the runc side", "Docker daemon"),
        code=EXIT_UNAVAILABLE,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "EXPLORER_CACHE": "{tmp}/cache"},
    ),
    Case(
        "image-flag-unknown-process",
        (
            "run",
            "--image",
            "{redis}",
            "--port",
            "6379",
            "--ready",
            "redis",
            "--process",
            "redis",
            "--sides",
            "runc",
            "--repeat",
            "1",
        ),
        ("no process named redis runs in the container", "PID 1 is redis-server"),
        code=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_live(case: Case, tmp_path: Path, docker_backend, redis_artifact):
    scenario_file = tmp_path / "scenario.yaml"
    if case.scenario is not None:
        scenario_file.write_text(yaml.safe_dump(case.scenario))
    fill = {"{file}": str(scenario_file), "{tmp}": str(tmp_path), "{redis}": redis_artifact.ref}

    def filled(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    env = {key: filled(value) for key, value in case.env.items()}
    result, pid = run_explorer_traced(*map(filled, case.args), env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == case.code, output
    for fragment in case.expect:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output
    assert containers_owned_by(pid) == []
    assert partials_of(pid) == []
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(scenario_file) in " ".join(p.info["cmdline"] or [])]


def test_the_two_tables_hold_at_least_40_kinds():
    from tests.unit.test_bad_inputs import CASES as UNIT

    assert len(CASES) + len(UNIT) >= 40


def test_a_recipe_file_names_no_host_file(docker_backend, tmp_path):
    """The key that once made mmdebstrap copy the host's /tmp/secret.txt is refused before
    any build (the table covers the message; here: no image, nothing copied)."""
    secret = Path("/tmp/explorer-test-secret.txt")
    secret.write_text("host secret\n")
    try:
        data = redis(name="t8-leak", **{"workload.build.files": {f"{secret} /etc/leaked.txt": "x"}})
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(data))
        result, _ = run_explorer_traced("build", "--scenario-file", str(path), "--sides", "runc")
        assert result.returncode == EXIT_USAGE and "whitespace" in result.stderr
        assert docker_client().images.list(name="explorer/t8-leak") == []
    finally:
        secret.unlink()
