"""--plot: one PNG with every chart of a result stacked (start to ready, host memory, what each
side starts from, what isolation costs, the host's system calls, density), drawn by the same
functions as the results page's charts (explorer/output/figures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.errors import UsageError
from explorer.output import figures, report
from explorer.output.document import upgraded


def require() -> None:
    """Fail before measuring, not after, when a plot was asked for and cannot be drawn."""
    try:
        import matplotlib  # noqa: F401 - optional dependency (explorer[plot]), imported when asked for
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed",
            hint="pip install 'explorer[plot]' (in a checkout: .venv/bin/pip install matplotlib)",
        ) from None


def write(result: dict[str, Any], path: str | Path) -> Path:
    require()
    result = upgraded(result)
    figures.save_png(figures.stacked(figures.CHARTS, result, report.title(result)), path)
    return Path(path)
