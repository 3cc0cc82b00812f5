"""Issue 23 as a user checks it, on a real small run: `explorer run redis --sides runc,snapshot
--repeat 1 --no-load` with no --output keeps its result and says where last; `explorer report`
with no file renders it, all eight claims for every side before any other table; at COLUMNS=80
no line is longer than 80; `report FILE --html` writes a page that headless Chromium renders,
whose DOM holds every verdict and which fetches nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer import document
from explorer import result as contract
from tests.conftest import backend_or_skip, run_explorer
from tests.unit.documents import expected_grid, grid_verdicts, typed
from tests.unit.test_page_browser import CHROMIUM, Visit

pytestmark = [pytest.mark.docker, pytest.mark.libvirt, pytest.mark.slow]


@pytest.fixture(scope="module")
def kept(docker_backend, libvirt_backend, redis_artifact, tmp_path_factory):
    """The run, its kept result and what it printed."""
    backend_or_skip("snapshot")
    folder = tmp_path_factory.mktemp("kept")
    env = {"EXPLORER_RESULTS": str(folder), "COLUMNS": "80"}
    done = run_explorer("run", "redis", "--sides", "runc,snapshot", "--repeat", "1", "--no-load", env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    (path,) = folder.glob("*.json")
    return {"path": path, "out": done.stdout, "err": done.stderr, "env": env}


def test_the_run_keeps_its_result_and_prints_its_path_last(kept):
    """The paths go to stderr, last (stdout holds the report only, so that it can be piped)."""
    path = kept["path"]
    assert kept["err"].rstrip("\n").splitlines()[-2:] == [f"kept: {path}", f"page: {path.with_suffix('.html')}"]
    assert f"kept: {path}" not in kept["out"]
    doc = json.loads(path.read_text())
    assert list(doc["sides"]) == ["runc", "snapshot"]
    assert list(document.parse_result(doc, str(path)).sides) == ["runc", "snapshot"]  # it fits the schema
    assert doc["schema"] == contract.RESULT and doc["schema_version"] == contract.SCHEMA_VERSION


def test_report_with_no_file_opens_with_every_claim_for_every_side_within_80_columns(kept):
    shown = run_explorer("report", env=kept["env"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines if not line.startswith("(the latest kept result")) <= 80
    grid = shown.stdout.split("Claims of the document, per side\n")[1].split("\n\n")[0]
    for number in range(1, 9):
        row = next(line for line in grid.splitlines() if line.startswith(f"{number} "))
        assert sum(word in row for word in ("yes", "NO", "unsure", "n/a", "reproduced", "inconclusive")) >= 1
    assert grid.splitlines()[0].split()[1:] == ["runc", "snapshot"]
    assert shown.stdout.index("Claims of the document") < shown.stdout.index("Key figures per side")
    assert f"the latest kept result: {kept['path']}" in shown.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no headless browser; scripts/setup-host installs chromium")
def test_the_page_renders_in_chromium_with_every_verdict_and_fetches_nothing(kept, tmp_path: Path):
    html = tmp_path / "page.html"
    written = run_explorer("report", str(kept["path"]), "--html", str(html), "--format", "json", env=kept["env"])
    assert written.returncode == 0, written.stderr
    judged = json.loads(written.stdout)  # the claims as the page judged them
    seen = Visit(html, tmp_path)
    assert grid_verdicts(seen.dom) == expected_grid(typed(judged))
    assert "<svg" in seen.dom and seen.page_requests() == []
