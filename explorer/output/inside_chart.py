"""The chart of the level of isolation, from the inside probe's runs: per side and user, the
escape-relevant operations the host's kernel answered, those another kernel answered (gVisor's
Sentry, a VM's guest kernel), those blocked, and those absent. As in explorer/output/charts.py,
a drawing function onto a given Axes, with its `missing_*` twin."""

from __future__ import annotations

from typing import Any

from explorer.output import charts, inside_table
from explorer.result import Result
from explorer.result.inside import InsideView

PARTS = (
    ("reached: the host's kernel", "#c44e52"),
    ("reached: another kernel", "#dd8452"),
    ("blocked", "#55a868"),
    ("absent or not made", "#c8c8c8"),
)
HOST = "the host's kernel"


def isolation_rows(result: Result) -> list[tuple[str, list[int]]]:
    """(row label, counts in PARTS' order) per side (and the native process) and user."""
    rows = []
    for title, run in inside_table.columns(result):
        view = run.view if run is not None else None
        if view is not None:
            rows.append((title.replace("\n", " · "), _counts(view)))
    return rows


def _counts(view: InsideView) -> list[int]:
    reached = sum(op.outcome in ("reachable", "succeeded") for op in view.operations)
    on_host = (view.answered_by or HOST) == HOST
    blocked = sum(op.outcome == "blocked" for op in view.operations)
    rest = len(view.operations) - reached - blocked
    return [reached if on_host else 0, 0 if on_host else reached, blocked, rest]


def missing_isolation(result: Result) -> str | None:
    if isolation_rows(result):
        return None
    reasons = [s.inside.reason for s in result.sides.values() if s.inside is not None and s.inside.reason]
    why = f" ({reasons[0]})" if reasons else ""
    return "the inside probe ran on no side in this result" + why


def isolation(ax: Any, result: Result) -> None:
    """Stacked per row: the operations each kind of answer took; the host kernel's count written right."""
    rows = isolation_rows(result)
    for y, (_, counts) in enumerate(rows):
        left = 0
        for (_, color), count in zip(PARTS, counts, strict=True):
            if count:
                ax.barh(y, count, left=left, color=color, edgecolor="white")
            left += count
        note = f"{counts[0]} by the host's kernel" if counts[0] else f"{counts[1]} by its own kernel"
        charts.note_right(ax, y, f"{note}, {counts[2]} blocked")
    charts.bars_like(ax, [label for label, _ in rows])
    ax.tick_params(axis="y", labelsize=charts.NOTE_SIZE)
    ax.set_xlim(left=0)
    ax.set_xlabel("escape-relevant operations, made harmlessly from where the workload runs, by who answered")
    charts.legend_below(ax, [charts.patch(facecolor=color, label=label) for label, color in PARTS], columns=4)
