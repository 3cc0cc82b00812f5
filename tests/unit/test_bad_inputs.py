"""The table of bad inputs that need no daemon: each one's exit code, a message naming the
field or the cause, no traceback, and nothing left behind. (Those that need Docker or
libvirt are in tests/integration/test_bad_inputs_live.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from explorer.errors import EXIT_UNAVAILABLE, EXIT_USAGE
from tests.conftest import ROOT, partials_of, run_explorer_traced


def redis(**changes) -> dict:
    """scenarios/redis.yaml with `changes` (dotted keys: 'workload.port') applied."""
    data = yaml.safe_load((ROOT / "scenarios" / "redis.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def files(*paths: object) -> dict:
    return redis(**{"workload.build.files": {path: "x\n" for path in paths}})


@dataclass
class Case:
    id: str
    args: tuple[str, ...]  # "{file}" is replaced by the scenario file, "{tmp}" by a temp dir
    expect: tuple[str, ...]  # fragments the output must hold: the field or the cause
    code: int = EXIT_USAGE
    scenario: dict | str | None = None  # a dict is dumped as YAML, a str written as is
    env: dict[str, str] = field(default_factory=dict)


RUN = ("run", "--scenario-file", "{file}", "--sides", "runc", "--repeat", "1")
IMAGE = ("run", "--sides", "runc", "--port", "6379", "--ready", "redis", "--image")
CASES = [
    # Scenario names Docker refuses as the repository explorer/NAME.
    Case("name-trailing-dash", RUN, ("name", "'redis-'", "not a valid scenario name"), scenario=redis(name="redis-")),
    Case("name-triple-underscore", RUN, ("name", "'a___b'"), scenario=redis(name="a___b")),
    Case("name-300-chars", RUN, ("name", "too long", "255"), scenario=redis(name="a" * 300)),
    Case("name-uppercase", RUN, ("name", "'Redis'"), scenario=redis(name="Redis")),
    Case("name-dot", RUN, ("name", "'re.dis'"), scenario=redis(name="re.dis")),
    Case("name-leading-dash", RUN, ("name", "'-redis'"), scenario=redis(name="-redis")),
    Case("name-not-a-string", RUN, ("name", "is not of type 'string'"), scenario=redis(name=5)),
    # Whole-number floats and booleans where an integer is needed.
    Case("repeats-float", RUN, ("repeats", "1.0 is not of type 'integer'"), scenario=redis(repeats=1.0)),
    Case(
        "port-float",
        RUN,
        ("workload.port", "6379.0 is not of type 'integer'"),
        scenario=redis(**{"workload.port": 6379.0}),
    ),
    Case(
        "memory-float",
        RUN,
        ("vm.memory_mib", "512.0 is not of type 'integer'"),
        scenario=redis(**{"vm.memory_mib": 512.0}),
    ),
    Case("vcpus-float", RUN, ("vm.vcpus", "1.0 is not of type 'integer'"), scenario=redis(**{"vm.vcpus": 1.0})),
    Case("repeats-bool", RUN, ("repeats", "True is not of type 'integer'"), scenario=redis(repeats=True)),
    Case("port-out-of-range", RUN, ("workload.port", "70000"), scenario=redis(**{"workload.port": 70000})),
    Case("ready-timeout-zero", RUN, ("timeouts.ready_s",), scenario=redis(**{"timeouts.ready_s": 0})),
    # files: keys are paths inside the image, and nothing else.
    Case(
        "file-two-paths",
        RUN,
        ("workload.build.files['/tmp/secret.txt /etc/leaked.txt']", "whitespace"),
        scenario=files("/tmp/secret.txt /etc/leaked.txt"),
    ),
    Case(
        "file-traversal",
        RUN,
        ("workload.build.files['/../../tmp/x']", "path traversal"),
        scenario=files("/../../tmp/x"),
    ),
    Case("file-traversal-middle", RUN, ("'/etc/../../x'", "path traversal"), scenario=files("/etc/../../x")),
    Case("file-relative", RUN, ("workload.build.files['etc/x']", "absolute"), scenario=files("etc/x")),
    Case("file-double-slash", RUN, ("'/etc//x'", "normalised"), scenario=files("/etc//x")),
    Case("file-leading-double-slash", RUN, ("'//etc/x'", "normalised"), scenario=files("//etc/x")),
    Case("file-trailing-slash", RUN, ("'/etc/x/'", "normalised"), scenario=files("/etc/x/")),
    Case("file-dot", RUN, ("'/etc/./x'", "normalised"), scenario=files("/etc/./x")),
    Case("file-root", RUN, ("workload.build.files['/']", "naming a file"), scenario=files("/")),
    Case("file-nul", RUN, ("workload.build.files", "NUL"), scenario=files("/etc/a\0b")),
    Case("file-newline", RUN, ("workload.build.files", "control characters"), scenario=files("/etc/a\nb")),
    Case("file-tab", RUN, ("workload.build.files", "whitespace"), scenario=files("/etc/a\tb")),
    Case("file-proc", RUN, ("'/proc/x'", "/proc is not part of the image"), scenario=files("/proc/x")),
    Case("file-explorer-own", RUN, ("'/.explorer/init'", "explorer's own"), scenario=files("/.explorer/init")),
    Case("file-not-a-string", RUN, ("workload.build.files", "is not of type 'string'"), scenario=files(1)),
    # Image references Docker refuses.
    Case(
        "image-uppercase",
        RUN,
        ("workload.image", "lowercase"),
        scenario={"name": "t8", "workload": {"image": "Redis:7", "port": 6379, "processes": ["x"], "ready": "tcp"}},
    ),
    Case(
        "image-double-colon",
        RUN,
        ("workload.image", "'redis::7'"),
        scenario={"name": "t8", "workload": {"image": "redis::7", "port": 6379, "processes": ["x"], "ready": "tcp"}},
    ),
    Case(
        "image-short-digest",
        RUN,
        ("workload.image", "64 hex digits"),
        scenario={
            "name": "t8",
            "workload": {"image": "redis@sha256:" + "a" * 40, "port": 1, "processes": ["x"], "ready": "tcp"},
        },
    ),
    Case("flag-image-uppercase", (*IMAGE, "Redis:7"), ("--image", "lowercase")),
    Case("flag-image-double-colon", (*IMAGE, "redis::7"), ("--image", "'redis::7'")),
    Case("flag-image-bad-digest", (*IMAGE, "redis@sha256:1234"), ("--image", "'redis@sha256:1234'")),
    Case("flag-image-without-port", ("run", "--image", "redis:7"), ("--image, --port and --ready go together",)),
    Case("flag-image-and-name", (*IMAGE, "redis:7", "redis"), ("not both",)),
    # YAML and the command line.
    Case(
        "yaml-duplicate-key",
        RUN,
        ("duplicate key 'port'", "line"),
        scenario="name: t8\nworkload:\n  image: redis:7\n  port: 6379\n  port: 6380\n  processes: [x]\n  ready: tcp\n",
    ),
    Case("yaml-invalid", RUN, ("not valid YAML",), scenario="name: [unclosed\n"),
    Case("yaml-not-a-mapping", RUN, ("(top level)", "is not of type 'object'"), scenario="- just\n- a list\n"),
    Case("unknown-key", RUN, ("unknown key(s) 'colour'",), scenario=redis(colour="blue")),
    Case(
        "bad-package-name",
        RUN,
        ("workload.build.packages[0]",),
        scenario=redis(**{"workload.build.packages": ["Redis Server"]}),
    ),
    Case("bad-suite-name", RUN, ("workload.build.suite",), scenario=redis(**{"workload.build.suite": "Bookworm"})),
    Case("name-and-scenario-file", ("run", "redis", "--scenario-file", "{file}"), ("not both",), scenario=redis()),
    Case(
        "build-name-and-scenario-file", ("build", "redis", "--scenario-file", "{file}"), ("not both",), scenario=redis()
    ),
    Case("unknown-scenario", ("run", "no-such-scenario"), ("unknown scenario 'no-such-scenario'",)),
    Case("no-scenario", ("run",), ("name a scenario",)),
    Case("unreadable-scenario-file", ("run", "--scenario-file", "/nonexistent/s.yaml"), ("cannot read scenario file",)),
    Case("bad-only", ("run", "redis", "--only", "lxc"), ("'lxc' is not one of",)),
    Case("repeat-zero", ("run", "redis", "--repeat", "0"), ("--repeat",)),
    # --output, checked before anything starts.
    Case(
        "output-missing-dir",
        ("run", "redis", "--output", "/nonexistent/dir/r.json"),
        ("--output", "/nonexistent/dir", "does not exist"),
    ),
    Case("output-is-a-directory", ("run", "redis", "--output", "{tmp}"), ("--output", "is a directory")),
    Case("output-unwritable", ("run", "redis", "--output", "/proc/r.json"), ("--output", "cannot write in /proc")),
    # An unwritable cache: run fails at once, clean --cache before removing anything.
    Case(
        "cache-unwritable-run",
        ("run", "redis"),
        ("the cache /proc", "not writable", "EXPLORER_CACHE"),
        env={"EXPLORER_CACHE": "/proc"},
    ),
    Case(
        "cache-uncreatable-build",
        ("build", "redis"),
        ("/proc/explorer-cache", "EXPLORER_CACHE"),
        env={"EXPLORER_CACHE": "/proc/explorer-cache"},
    ),
    Case(
        "cache-unwritable-clean",
        ("clean", "--cache"),
        ("the cache /proc", "not writable"),
        env={"EXPLORER_CACHE": "/proc"},
    ),
    Case(
        "doctor-cache-unwritable",
        ("doctor",),
        ("cache (EXPLORER_CACHE)", "MISSING", "not writable"),
        code=EXIT_UNAVAILABLE,
        env={"EXPLORER_CACHE": "/proc"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path):
    scenario_file = tmp_path / "scenario.yaml"
    if isinstance(case.scenario, dict):
        scenario_file.write_text(yaml.safe_dump(case.scenario))
    elif isinstance(case.scenario, str):
        scenario_file.write_text(case.scenario)
    args = [a.replace("{file}", str(scenario_file)).replace("{tmp}", str(tmp_path)) for a in case.args]
    result, pid = run_explorer_traced(*args, env=case.env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == case.code, output
    for fragment in case.expect:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output
    assert partials_of(pid) == []  # no partial build or work dir was left


def test_the_table_holds_at_least_40_kinds():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
