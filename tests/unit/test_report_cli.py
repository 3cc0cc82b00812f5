"""`explorer report` and `explorer compare` on saved results, in every format, and the errors a
bad file gives (exit 2, a message, no traceback). No daemon needed."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from explorer.cli import cli, main
from explorer.errors import EXIT_USAGE
from explorer.output import report
from tests.unit.documents import partial

FIXTURES = Path(__file__).parent / "fixtures"
BOTH, CONTAINER, VM = (str(FIXTURES / f"{n}.json") for n in ("both", "container", "vm"))


def invoke(*args: str) -> tuple[int, str, str]:
    """The real entry point (cli(), which turns errors into exit codes) under CliRunner's
    isolation: exit code, stdout, stderr."""
    argv, sigterm = sys.argv, signal.getsignal(signal.SIGTERM)
    with CliRunner().isolation() as (out, err, _):
        sys.argv = ["explorer", *args]
        try:
            cli()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = argv
            signal.signal(signal.SIGTERM, sigterm)
        return code, out.getvalue().decode(), err.getvalue().decode()


def ok(*args: str, columns: int = 100) -> str:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


# ---- report -------------------------------------------------------------------------------


def test_report_table_opens_with_the_answer():
    out = ok("report", BOTH)
    grid = out.split("Claims of the document, per side\n")[1].split("\n\n")[0]
    for row in ("1 processes visible", "3 image size", "7 bin-packing"):
        assert row in grid
    assert grid.splitlines()[0].split() == ["claim", "container", "vm"]
    assert out.index("Claims of the document") < out.index("Key figures per side")
    # claim 3 on an older result: inconclusive for both sides, and the line under the grid says why
    assert grid.count("? inconclusive") == 4  # claim 3 and claim 8 (no inside probe then), both sides
    assert "3 image size: container inconclusive: side.image.stored_bytes is unknown (null)" in " ".join(out.split())
    assert "under TCG" in out  # the key figures' caveat
    assert "Side by side" not in out and "--detail" in out  # everything else behind --detail
    assert max(len(line) for line in out.splitlines()) <= 100


def test_report_detail_has_every_table_within_the_width():
    out = ok("report", BOTH, "--detail", columns=80)
    assert "Side by side" in out and "\nClaims, per side\n" in out and "\nVerdicts\n" in out
    for first_words in ("1. Container processes", "3. Containers are", "7. Many containers can"):
        assert first_words.split()[0] in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_report_markdown_escapes_pipes():
    out = ok("report", BOTH, "--format", "markdown")
    assert "## Claims, per side" in out
    section = out.split("## Claims, per side")[1].split("## Verdicts")[0]
    claims_rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(claims_rows) == 1 + 2 * 8  # header and one row per claim and side
    assert "ps -e \\| grep redis-server" in out
    assert all(len(re.split(r"(?<!\\)\|", row)) == 4 + 2 for row in claims_rows)  # 4 cells each


def test_report_json_recomputes_the_claims(tmp_path: Path):
    stale = json.loads(Path(BOTH).read_text())
    stale["claims"] = [{"id": "visibility", "verdict": "bogus"}]
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(stale))
    doc = json.loads(ok("report", str(path), "--format", "json"))
    assert doc["schema"] == "explorer.result/4" and doc["upgraded_from"] == "explorer.result/1"
    assert [c["verdict"] for c in doc["claims"]].count("reproduced") == 6
    assert doc["sides"].keys() == stale["sides"].keys()
    assert doc["sides"]["vm"]["kind"] == "vm" and doc["sides"]["container"]["title"] == "container"


def test_report_of_one_side_says_what_is_missing():
    out = ok("report", CONTAINER, "--format", "markdown")
    assert "no vm side measured" in out


def test_report_evidence_uses_the_tables_figures():
    out = ok("report", BOTH, "--format", "markdown")
    side_by_side = out.split("## Side by side")[1].split("## Claims, per side")[0]
    for figure in ("288 ms", "11.64 s", "268.5 MiB", "redis-server 23262"):
        assert figure in side_by_side and figure in out.split("## Claims, per side")[1]


# ---- bad files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such result file"),
        ("{not json", "is not JSON (line 1"),
        ('{"schema": "explorer.result/2", "host": {"hostna', "is not JSON (line 1"),  # truncated
        ("[1, 2]", "is not an explorer result"),
        ('{"schema": "explorer.result/99", "sides": {}}', "'explorer.result/99' document; explorer"),
        ('{"schema": "explorer.result/1", "host": {}}', "host.hostname: expected a value (the field is required)"),
    ],
)
@pytest.mark.parametrize("command", ["report", "compare"])
def test_bad_file_exits_2_with_a_message(tmp_path: Path, command: str, content: str | None, message: str):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    args = [command, str(path)] + ([BOTH] if command == "compare" else [])
    code, out, err = invoke(*args)
    assert code == EXIT_USAGE
    assert f"Error: {path}" in err or "Error: no such result file" in err
    assert message in err and "Hint:" in err
    assert "Traceback" not in err and out == ""


def test_unknown_format_is_a_usage_error():
    code, _, err = invoke("report", BOTH, "--format", "html")
    assert code == EXIT_USAGE and "'html' is not one of" in err


# ---- compare -----------------------------------------------------------------------------


def test_compare_table_one_column_per_run():
    out = ok("compare", CONTAINER, BOTH, VM)
    header = out.splitlines()[0].split()
    assert header == ["container", "both", "vm"]
    rows = {line.split("  ")[0]: line for line in out.splitlines()[2:]}
    for label in (
        "host",
        "VM: accel",
        "container: image content, unpacked",
        "VM: image stored",
        "VM: start to ready, median",
        "container: host memory per instance (PSS)",
        "VM: workload in host's ps -e",
        "VM: kernel",
        "claim 3: size",
    ):
        assert label in rows, label
    assert "not measured" in rows["VM: accel"] and rows["VM: accel"].count("tcg") == 2


def test_compare_json_keeps_every_figure():
    doc = json.loads(ok("compare", CONTAINER, BOTH, "--format", "json"))
    assert doc["runs"] == ["container", "both"]
    rows = {r["figure"]: r["values"] for r in doc["rows"]}
    assert rows["container: image content, unpacked"] == {"container": "112.4 MiB", "both": "112.4 MiB"}
    assert rows["VM: image stored"]["both"] == "- (one figure: 135.4 MiB as stored)"
    assert rows["VM: start to ready, median"] == {"container": "not measured", "both": "11.64 s (n=2)"}
    assert rows["claim 1: visibility"] == {"container": "inconclusive", "both": "reproduced"}
    assert rows["claim 3: size"] == {"container": "inconclusive", "both": "inconclusive"}


def test_compare_markdown_and_same_file_names(tmp_path: Path):
    other = tmp_path / "both.json"
    other.write_text(Path(BOTH).read_text())
    out = ok("compare", BOTH, str(other), "--format", "markdown")
    assert out.startswith("# explorer: runs compared\n")
    assert f"| {BOTH}" in out.splitlines()[1] and str(other) in out.splitlines()[1]


def test_compare_says_at_the_top_when_the_runs_measure_different_things(tmp_path: Path):
    other = json.loads(Path(BOTH).read_text())
    other["scenario"]["name"], other["scenario"]["ready"] = "redis-tcp", "tcp"
    other["scenario"]["ready_check"] = "a TCP connection accepted and held open for 0.5 s"
    path = tmp_path / "tcp.json"
    path.write_text(json.dumps(other))
    out = ok("compare", BOTH, str(path))
    first = out.splitlines()[:2]
    assert first[0].startswith("Warning: the runs measure different scenarios: both: redis; tcp: redis-tcp")
    assert first[1].startswith("Warning: the runs measure different readiness checks:")
    assert "not like for like" in first[0]
    doc = json.loads(ok("compare", BOTH, str(path), "--format", "json"))
    assert len(doc["warnings"]) == 2
    assert "Warning" not in ok("compare", BOTH, BOTH).splitlines()[0]


# ---- plot --------------------------------------------------------------------------------


def test_report_plot_writes_a_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "run.png"
    ok("report", BOTH, "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = invoke("report", BOTH, "--plot", str(tmp_path / "x.png"))
    assert code == EXIT_USAGE
    assert "--plot needs matplotlib" in err and "one of explorer's dependencies" in err
    assert not (tmp_path / "x.png").exists()
    assert out == ""  # checked before anything is rendered


def test_run_plot_without_matplotlib_fails_before_measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr("explorer.lifecycle.run", lambda *a, **k: pytest.fail("measured before checking --plot"))
    code, _, err = invoke("run", "redis", "--sides", "runc", "--plot", str(tmp_path / "x.png"))
    assert code == EXIT_USAGE and "--plot needs matplotlib" in err


def test_claims_table_widths_match_its_columns():
    headers, _ = report.claims_table(partial({"claims": []}))
    assert len(report.CLAIMS_WIDTHS) == len(headers)
