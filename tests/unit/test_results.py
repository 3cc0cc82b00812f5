"""Every run kept (explorer/output/results.py): named by scenario, time and host, written whole
or not at all, read back by `report` with no file and listed by `results`; a results
directory that cannot be written stops a run before it measures; `clean --cache` spares it."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from explorer import cleanup, document, sides
from explorer.cli import main
from explorer.errors import EXIT_USAGE, UsageError
from explorer.output import files, results
from explorer.result import DensityResult
from tests.unit.documents import typed
from tests.unit.test_runner_fake import SCENARIO_YAML, FakeEngine

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fake(monkeypatch):
    """The fake side of test_runner_fake (a local PONG server per start), registered."""
    side = sides.Side(
        "fake", "container", "fake container", "tests.unit.test_runner_fake:assemble", roles=("shim",), about="a double"
    )
    monkeypatch.setitem(sides.SIDES, "fake", side)
    FakeEngine.calls, FakeEngine.behaviour = [], {}
    return FakeEngine


@pytest.fixture
def kept_in(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "results"
    monkeypatch.setenv(results.ENV, str(folder))
    return folder


def run_fake(tmp_path: Path, *extra: str, columns: int = 100):
    scenario = tmp_path / "fake.yaml"
    scenario.write_text(SCENARIO_YAML)
    args = ["run", "--scenario-file", str(scenario), "--sides", "fake", "--repeat", "1", "--no-load", *extra]
    return CliRunner().invoke(main, args, env={"COLUMNS": str(columns)})


def test_a_run_keeps_its_result_and_says_where_last(fake, kept_in, tmp_path):
    done = run_fake(tmp_path)
    assert done.exit_code == 0, done.output
    (kept,) = kept_in.glob("*.json")
    assert re.fullmatch(r"fake-\d{8}T\d{6}Z-[A-Za-z0-9._-]+\.json", kept.name)
    assert json.loads(kept.read_text())["sides"]["fake"]["title"] == "fake container"
    last = done.stderr.rstrip("\n").splitlines()[-2:]  # stdout is the report's alone
    assert last == [f"kept: {kept}", f"page: {kept.with_suffix('.html')}"]
    assert "kept:" not in done.stdout and "page:" not in done.stdout
    assert kept.with_suffix(".html").is_file()
    assert [p.name for p in kept_in.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_report_with_no_file_renders_the_latest_and_results_lists_them(fake, kept_in, tmp_path):
    assert run_fake(tmp_path).exit_code == 0
    assert run_fake(tmp_path).exit_code == 0  # the same second: a second name, not an overwrite
    kept = sorted(kept_in.glob("*.json"))
    assert len(kept) == 2
    latest = results.latest(kept_in)
    shown = CliRunner().invoke(main, ["report"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    assert "Claims of the document, per side" in shown.stdout and f"the latest kept result: {latest}" in shown.stdout
    listed = CliRunner().invoke(main, ["results"])
    assert listed.exit_code == 0 and all(p.name in listed.stdout for p in kept)
    assert "fake" in listed.stdout and "when (UTC)" in listed.stdout
    assert CliRunner().invoke(main, ["report", "--list"]).stdout == listed.stdout


def test_report_with_nothing_kept_is_a_usage_error(kept_in):
    done = CliRunner().invoke(main, ["report"])
    assert isinstance(done.exception, UsageError) and done.exception.exit_code == EXIT_USAGE
    assert "no kept result in" in str(done.exception)


@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_an_unwritable_results_directory_stops_the_run_before_it_measures(fake, tmp_path, monkeypatch, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(results.ENV, str(blocker if where == "a-file" else blocker / "results"))
    done = run_fake(tmp_path)
    assert isinstance(done.exception, UsageError) and done.exception.exit_code == EXIT_USAGE
    assert "results directory" in str(done.exception)
    assert not any(call.startswith("create") for call in fake.calls)  # nothing was measured


def test_a_full_disk_while_keeping_is_exit_2_after_the_tables(fake, kept_in, tmp_path, monkeypatch):
    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    done = run_fake(tmp_path)
    assert isinstance(done.exception, UsageError) and "No space left on device" in str(done.exception)
    assert "Claims of the document, per side" in done.stdout  # the tables were printed first
    assert list(kept_in.iterdir()) == []  # no half-written file, no temporary


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    real = files.os.fdopen

    def interrupted(fd, mode):
        handle = real(fd, mode)
        handle.write = lambda _text: (_ for _ in ()).throw(KeyboardInterrupt())
        return handle

    monkeypatch.setattr(files.os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_text(str(tmp_path / "r.json"), "{}", "the result")
    assert list(tmp_path.iterdir()) == []


def test_clean_cache_never_deletes_results(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    kept = cache / "mine" / "results"
    kept.mkdir(parents=True)
    (kept / "redis-20261206T000000Z-h.json").write_text("{}")
    (cache / "mine" / "rootfs.tar").write_text("x")
    (cache / "images").mkdir()
    (cache / "images" / "disk.qcow2").write_text("x")
    monkeypatch.setenv(results.ENV, str(kept))
    done = cleanup.Cleaned()
    cleanup._remove_cache(cache, done)
    assert done.unreachable == [] and f"kept the results in {kept.resolve()}" in done.removed[0]
    assert [p.name for p in kept.iterdir()] == ["redis-20261206T000000Z-h.json"]
    assert not (cache / "images").exists() and not (cache / "mine" / "rootfs.tar").exists()


def test_file_names_are_safe_and_come_from_the_document():
    doc = json.loads((FIXTURES / "both.json").read_text())
    doc["host"]["hostname"] = "my host/../x"
    assert results.file_name(typed(doc)) == f"redis-{_stamp(doc['started_at'])}-my-host-..-x.json"
    density = {
        "schema": "explorer.density/1",
        "scenario": {"name": "redis"},
        "host": {"hostname": "h", "kernel_release": "6.1.0", "cpu_cores": 2},
        "guard": {"start_available_bytes": 4, "floor_bytes": 1, "floor_fraction": 0.25},
        "sides": {},
        "started_at": "2026-12-06T01:02:03+00:00",
    }
    parsed = document.parsed(DensityResult, density, "a density document", "explorer.density/1")
    assert results.file_name(parsed) == "redis-density-20261206T010203Z-h.json"


def _stamp(started: str) -> str:
    import datetime as dt

    return dt.datetime.fromisoformat(started).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
