"""--plot: one PNG with every chart of a result stacked (start to ready, host memory, what each
side starts from, what isolation costs, the host's system calls, density), drawn by the same
functions as the results page's charts (explorer/output/figures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.document import upgraded
from explorer.errors import UsageError
from explorer.output import figures, report


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


def write(result: dict[str, Any], path: str | Path) -> Path:
    require()
    result = upgraded(result)
    figures.save_png(figures.stacked(figures.CHARTS, result, report.title(result)), path)
    return Path(path)
