"""Startup figures: per-repeat milestones and their spread."""

from __future__ import annotations

import itertools
import statistics
from typing import Any


def summarize(repeats: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """min / median / max / stdev of every milestone, over the starts that measured it (n says
    how many: a milestone that comes after readiness is waited for on the probed start only)."""
    keys = list(dict.fromkeys(k for r in repeats for k in r))
    out = {}
    for key in keys:
        values = [r[key] for r in repeats if key in r]
        out[key] = {
            "n": len(values),
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    return out


def relative(marks: dict[str, float], t0: float, order: tuple[str, ...]) -> dict[str, Any]:
    """Milestones as seconds since t0 (just before the create call), in lifecycle order."""
    return {f"{m}_s": round(marks[m] - t0, 4) for m in order if m in marks}


def timeline(repeats: list[dict[str, float]], order: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """Whether every start's milestones happened in an order the side allows: each chain of
    `order` (as the side defines it: created <= process <= kernel <= ready, say) must not go
    backwards. A readiness check that a proxy fooled (a VM "ready" before its kernel booted) is
    caught here, before any claim reads the figures."""
    problems = []
    for number, start in enumerate(repeats, 1):
        for chain in order:
            seen = [(m, start[f"{m}_s"]) for m in chain if f"{m}_s" in start]
            for (first, at), (then, later) in itertools.pairwise(seen):
                if later < at:
                    problems.append(f"start {number}: {then} ({_shown(later)}) before {first} ({_shown(at)})")
    return {"ok": not problems, "order": [list(chain) for chain in order], "problems": problems}


def _shown(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
