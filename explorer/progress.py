"""Progress on long steps (building, booting): a rich spinner with elapsed time on a terminal,
silent otherwise so that logs and CI output stay clean."""

from __future__ import annotations

import sys
from typing import Any, Self

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Steps:
    """Call with a message to start a new step; the previous one is marked done."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
        return self

    def __call__(self, message: str) -> None:
        if self._progress is None:
            return
        self._finish_current()
        self._task = self._progress.add_task(message, total=1)

    def _finish_current(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=1)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._finish_current()
            self._progress.stop()
