"""`explorer density --plot`: host memory against N, one line per side with its fit, in the
side's colour; and each instance's time to ready against N. matplotlib is imported lazily, as
in explorer/plot.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.output import plot
from explorer.output.document import side_color, side_title
from explorer.units import seconds

MIB = 1024 * 1024


def write(doc: dict[str, Any], path: str | Path) -> Path:
    plot.require()
    import matplotlib  # optional dependency (explorer[plot]): only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional dependency, as above

    fig, (memory_ax, ready_ax) = plt.subplots(2, 1, figsize=(10, 9), gridspec_kw={"height_ratios": [3, 2]})
    for name, side in doc["sides"].items():
        _memory(memory_ax, side, side_title(side, name), side_color(side))
        _ready(ready_ax, side, side_title(side, name), side_color(side))
    memory_ax.set_xlabel("instances running (N)")
    memory_ax.set_ylabel("MiB")
    memory_ax.set_title("Host memory against N: summed PSS (dots, fit line), MemAvailable drop (hollow)")
    memory_ax.legend(fontsize=8)
    memory_ax.grid(alpha=0.3)
    ready_ax.set_xlabel("instance number (N when it started)")
    ready_ax.set_ylabel("seconds, create -> ready")
    ready_ax.set_yscale("log")
    ready_ax.yaxis.set_major_formatter(lambda value, _pos: seconds(value))  # the tables' own format
    ready_ax.yaxis.set_minor_formatter(lambda value, _pos: "")
    ready_ax.set_title("Time to ready against N")
    ready_ax.legend(fontsize=8)
    ready_ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"explorer density: {doc['scenario']['name']} on {doc.get('host', {}).get('hostname', '?')}")
    return plot.save(fig, path)


def _memory(ax: Any, side: dict[str, Any], title: str, color: str) -> None:
    steps = side.get("steps", [])
    if not steps:
        return
    ns = [s["n"] for s in steps]
    ax.scatter(ns, [s["pss_bytes"] / MIB for s in steps], color=color, zorder=3)
    ax.scatter(ns, [s["available_drop_bytes"] / MIB for s in steps], facecolors="none", edgecolors=color, zorder=3)
    fit = side.get("fits", {}).get("pss")
    if fit:
        xs = [0, max(ns)]
        label = f"{title}: {fit['slope'] / MIB:.1f} MiB/instance + {fit['intercept'] / MIB:.0f} MiB"
        ax.plot(xs, [(fit["slope"] * x + fit["intercept"]) / MIB for x in xs], color=color, label=label)


def _ready(ax: Any, side: dict[str, Any], title: str, color: str) -> None:
    ready = [r for s in side.get("steps", []) for r in s.get("ready_s", [])]
    if ready:
        ax.plot(range(1, len(ready) + 1), ready, marker="o", color=color, label=title)
