"""The level of isolation as the report and the page show it, read off `make demo`'s kept result
(eight sides and the native process, the inside probe on each): the table has a row per fact and
per operation and a column per side and user, each cell what that run's record says; the
cross-check table holds every compared call of the sides on the host's kernel; the notes say how
the probe got into each side and who answered; the chart's bars add up to each run's operations;
the Markdown report and the page carry them."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer import claims, document
from explorer.output import inside_chart, inside_table, report
from explorer.result import Result

FIXTURE = Path(__file__).parent / "fixtures" / "eight-sides-v4.json"


@pytest.fixture(scope="module")
def demo() -> Result:
    return claims.judged(document.load_result(FIXTURE))


def test_one_column_per_side_and_user_the_native_process_first(demo):
    headers, rows = inside_table.inside_table(demo)
    runs = [(name, run) for name, side in demo.sides.items() for run in (side.inside.runs if side.inside else [])]
    assert demo.inside_native is not None
    assert len(headers) == 1 + len(demo.inside_native.runs) + len(runs)
    assert headers[1].startswith("native process")
    assert all(len(row) == len(headers) for row in rows)


def test_each_cell_is_what_its_run_recorded(demo):
    _, rows = inside_table.inside_table(demo)
    by_label = {row[0]: row[1:] for row in rows}
    columns = inside_table.columns(demo)
    for index, (_, run) in enumerate(columns):
        if run is None or run.view is None:
            continue
        for op in run.view.operations:
            cell = by_label[f"op: {op.id}"][index]
            assert cell.split()[0] == inside_table.OUTCOME_WORDS.get(op.outcome, op.outcome), (op.id, cell)
            if op.errno_name:
                assert cell.endswith(op.errno_name)
        facts = run.view.facts
        assert facts is not None
        boot = by_label["fact: boot_id"][index]
        assert boot == ("= host" if facts.boot_id.same_as_host else "its own")


def test_the_runc_workload_sees_the_host_s_kernel_and_the_vms_their_own(demo):
    headers, rows = inside_table.inside_table(demo)
    boot = next(row for row in rows if row[0] == "fact: boot_id")
    for title, cell in zip(headers[1:], boot[1:], strict=True):
        if title.startswith(("runc container", "user-namespaced", "native process")):
            assert cell == "= host", title
        if title.startswith(("microVM", "full-OS VM", "Vagrant VM", "restored microVM", "gVisor")):
            assert cell == "its own", title


def test_the_cross_check_covers_the_sides_on_the_host_s_kernel_only(demo):
    _, rows = inside_table.cross_check_table(demo)
    sides = {row[0] for row in rows}
    assert sides == {"runc container", "user-namespaced container", "system container"}
    assert all(row[5] in ("yes", "-") for row in rows), [row for row in rows if row[5] == "NO"]


def test_the_notes_say_how_the_probe_got_into_each_side_and_who_answered(demo):
    notes = inside_table.inside_notes(demo)
    for name, side in demo.sides.items():
        assert side.inside is not None and side.inside.delivery
        title = side.title or name
        assert any(note.startswith(f"{title}: {side.inside.delivery}") for note in notes), title
    assert any("io_uring_setup" in note and "Docker" in note for note in notes)  # the engine's version said


def test_the_chart_s_bars_add_up_to_each_run_s_operations(demo):
    rows = inside_chart.isolation_rows(demo)
    columns = [run for _, run in inside_table.columns(demo) if run is not None and run.view is not None]
    assert len(rows) == len(columns)
    for (label, counts), run in zip(rows, columns, strict=True):
        assert run.view is not None and sum(counts) == len(run.view.operations), label
        if run.view.answered_by not in (None, inside_chart.HOST):
            assert counts[0] == 0, label  # another kernel's answers are never the host kernel's
    gvisor = [counts for label, counts in rows if label.startswith("gVisor")]
    assert gvisor and all(c[0] == 0 and c[1] > 0 for c in gvisor)


def test_the_markdown_report_carries_the_table_and_the_claim(demo):
    text = report.render(demo, "markdown", 200, True)
    assert inside_table.INSIDE_HEADING in text and inside_table.CROSS_HEADING in text
    assert "level of isolation" in text.split(inside_table.INSIDE_HEADING)[0]  # the claim, before its table
