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


def test_the_full_os_image_is_built_with_the_sides_name_and_the_old_flag_still_works(tmp_path: Path):
    """`build --fullvm` (the side's name); `--fullos`, the old name, works with a deprecation note."""
    path = tmp_path / "image.yaml"
    path.write_text("name: img\nworkload: {image: 'redis:7', port: 6379, processes: [redis-server], ready: redis}\n")
    for flag in ("--fullvm", "--fullos"):
        result = run_explorer("build", "--scenario-file", str(path), flag)
        assert result.returncode == EXIT_USAGE, result.stderr
        assert "explorer build --fullvm needs an offline recipe" in result.stderr
        assert ("--fullos is deprecated, use --fullvm" in result.stderr) == (flag == "--fullos")
    assert "--fullvm" in run_explorer("build", "--help").stdout


def test_sides_and_only_together_are_a_usage_error():
    result = run_explorer("run", "redis", "--sides", "runc", "--only", "vm")
    assert result.returncode == EXIT_USAGE and "give --sides or --only, not both" in result.stderr
