"""Startup figures: per-repeat milestones and their spread."""

from __future__ import annotations

import statistics
from typing import Any


def summarize(repeats: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """min / median / max / stdev of every milestone measured in all repeats."""
    keys = [k for k in repeats[0] if all(k in r for r in repeats)] if repeats else []
    out = {}
    for key in keys:
        values = [r[key] for r in repeats]
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
