"""The report warns when readiness was a bare TCP connect, and saved results from before
readiness had parameters (`"ready": "redis"`, no ready_params) still render."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from explorer.cli import main
from explorer.output import report
from tests.unit.documents import typed

FIXTURES = Path(__file__).parent / "fixtures"


def saved(name: str = "both") -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_a_tcp_run_carries_its_warning_in_every_text_format(tmp_path: Path):
    result = saved()
    result["scenario"].update(ready="tcp", ready_params={}, ready_warning="readiness was a TCP connect ...")
    path = tmp_path / "tcp.json"
    path.write_text(json.dumps(result))
    table = CliRunner().invoke(main, ["report", str(path)]).stdout
    assert table.splitlines()[1] == "Warning: readiness was a TCP connect ..."
    markdown = CliRunner().invoke(main, ["report", str(path), "--format", "markdown"]).stdout
    assert "\n> Warning: readiness was a TCP connect ...\n" in markdown


def test_old_results_without_ready_params_still_render():
    for name in ("both", "container", "vm"):
        result = saved(name)
        assert result["scenario"]["ready"] == "redis" and "ready_params" not in result["scenario"]
        assert report.notes(typed(result)) == []
        out = CliRunner().invoke(main, ["report", str(FIXTURES / f"{name}.json")])
        assert out.exit_code == 0 and "Claims of the document" in out.stdout and "Warning" not in out.stdout
