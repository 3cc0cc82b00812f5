"""The CLI's answers to bad input that need no daemon: clear message, exit 2."""

from __future__ import annotations

from pathlib import Path

from explorer.errors import EXIT_USAGE
from tests.conftest import run_explorer


def test_list_shows_bundled_scenarios():
    result = run_explorer("list")
    assert result.returncode == 0
    assert "redis" in result.stdout and "postgres" in result.stdout


def test_run_without_a_scenario_is_a_usage_error():
    result = run_explorer("run")
    assert result.returncode == EXIT_USAGE
    assert "Error: name a scenario" in result.stderr


def test_invalid_scenario_file_lists_all_problems(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nworkload: {port: 0, processes: [], ready: redis, image: a, extra: 1}\n")
    result = run_explorer("run", "--scenario-file", str(path))
    assert result.returncode == EXIT_USAGE
    for fragment in ("workload: unknown key(s) 'extra'", "workload.port", "workload.processes"):
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_is_a_usage_error():
    result = run_explorer("run", "redis", "--only", "lxc")
    assert result.returncode == EXIT_USAGE
    assert "'lxc' is not one of" in result.stderr
