"""stdout is for the format asked: with --format json, stdout carries the JSON document alone
(what was kept and where the page went are said on stderr), for `run`, `density`, `compare`,
`report` and `results`; with --format markdown, only Markdown. Run on the fake side (a local
PONG server per start, no daemon)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from explorer.cli import main
from explorer.result import RESULT
from tests.unit.test_density_logic import counting  # noqa: F401 - the counting fake side's fixture
from tests.unit.test_report_cli import invoke
from tests.unit.test_results import fake, kept_in, run_fake  # noqa: F401 - fixtures

FIXTURES = Path(__file__).parent / "fixtures"


def json_of(out: Any) -> Any:
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)  # the whole of stdout: nothing before or after the document


def test_run_json_is_the_result_alone_and_kept_goes_to_stderr(fake, kept_in, tmp_path):  # noqa: F811
    out = run_fake(tmp_path, "--format", "json")
    doc = json_of(out)
    assert doc["schema"] == RESULT and list(doc["sides"]) == ["fake"] and doc["claims"]
    (kept,) = kept_in.glob("*.json")
    assert f"kept: {kept}" in out.stderr and f"page: {kept.with_suffix('.html')}" in out.stderr
    assert json.loads(kept.read_text()) == doc  # what was shown is what was kept


def test_run_markdown_is_markdown_alone(fake, kept_in, tmp_path):  # noqa: F811
    out = run_fake(tmp_path, "--format", "markdown")
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("# explorer: fake") and "kept:" not in out.stdout and "page:" not in out.stdout


def test_density_json_is_the_density_document_alone(counting, kept_in, tmp_path):  # noqa: F811
    scenario = tmp_path / "fake.yaml"
    scenario.write_text(
        json.dumps(
            {
                "name": "fake",
                "timeouts": {"ready_s": 2},
                "workload": {"image": "fake:1", "port": 6379, "processes": ["fake"], "ready": "redis"},
            }
        )
    )
    args = ["density", "--scenario-file", str(scenario), "--sides", "fake", "--count", "2", "--format", "json"]
    out = CliRunner().invoke(main, args)
    doc = json_of(out)
    assert doc["schema"] == "explorer.density/1" and doc["sides"]["fake"]["count"] == 2
    assert "kept: " in out.stderr and "explorer density: run" in out.stderr


def test_report_compare_and_results_json_are_documents_alone(fake, kept_in, tmp_path):  # noqa: F811
    assert run_fake(tmp_path).exit_code == 0
    (kept,) = kept_in.glob("*.json")
    reported = json_of(CliRunner().invoke(main, ["report", "--format", "json"]))
    assert reported["schema"] == RESULT and reported["run_id"] == json.loads(kept.read_text())["run_id"]
    compared = json_of(
        CliRunner().invoke(main, ["compare", str(kept), str(FIXTURES / "both.json"), "--format", "json"])
    )
    assert compared["schema"] == "explorer.compare/1" and len(compared["runs"]) == 2
    listed = json_of(CliRunner().invoke(main, ["results", "--format", "json"]))
    assert [r["path"] for r in listed["results"]] == [str(kept)] and listed["unfit"] == []


def test_results_refuses_a_kept_file_that_does_not_fit_after_listing_the_rest(fake, kept_in, tmp_path):  # noqa: F811
    assert run_fake(tmp_path).exit_code == 0
    (kept,) = kept_in.glob("*.json")
    broken = json.loads(kept.read_text())
    broken["sides"]["fake"]["startup"] = "fast"
    (kept_in / "broken.json").write_text(json.dumps(broken))
    code, stdout, stderr = invoke("results")  # the real entry point: the error's exit code, on stderr
    assert code == 2 and kept.name in stdout and "broken.json" not in stdout
    assert "broken.json does not fit the explorer.result/4 schema: sides.fake.startup: expected an object" in stderr
