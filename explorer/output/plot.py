"""--plot: one PNG with every chart of a result stacked (start to ready, host memory, what each
side starts from, what isolation costs, the host's system calls, density), drawn by the same
functions as the results page's charts (explorer/output/figures.py)."""

from __future__ import annotations

from pathlib import Path

from explorer.errors import UsageError
from explorer.output import figures, report
from explorer.result import Result


def require() -> None:
    """Fail before measuring, not after, when a chart is asked for and matplotlib, one of
    explorer's dependencies, is missing (an install that skipped dependencies)."""
    try:
        import matplotlib  # noqa: F401 - costly to load: only checked here, imported where a chart is drawn
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed",
            hint="matplotlib is one of explorer's dependencies: pip install explorer "
            "(in a checkout: .venv/bin/pip install -e .)",
        ) from None


def write(result: Result, path: str | Path) -> Path:
    require()
    figures.save_png(figures.stacked(figures.CHARTS, result, report.title(result)), path)
    return Path(path)
