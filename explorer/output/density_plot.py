"""`explorer density --plot`: host memory against N, one line per side with its fit, in the
side's colour; and each instance's time to ready against N. The charts are the results page's
(explorer/output/charts.py); matplotlib is imported only when they are drawn."""

from __future__ import annotations

from pathlib import Path

from explorer.output import charts, figures, plot
from explorer.result import DensityResult


def write(doc: DensityResult, path: str | Path) -> Path:
    plot.require()
    with figures.matplotlib_rc():
        fig = figures.new_figure(figures.WIDTH_IN, 10)
        memory_ax, ready_ax = fig.subplots(2, 1, height_ratios=[3, 2])
        charts.density_memory(memory_ax, doc.sides)
        charts.density_ready(ready_ax, doc.sides)
        memory_ax.set_title("Host memory against N: summed PSS (dots, fit line), MemAvailable drop (hollow)")
        ready_ax.set_title("Time to ready against N")
        fig.suptitle(f"explorer density: {doc.scenario.name} on {doc.host.hostname}")
    figures.save_png(fig, path)
    return Path(path)
