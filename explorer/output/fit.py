"""Tables that fit a terminal: the width is the terminal's (COLUMNS respected, 100 when the
output is not a terminal), cells wrap at spaces only, and a figure with its unit
("838.6 MiB", "4.59 s", "0.38x") is never broken across lines."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from typing import Any

import tabulate as tabulate_module
from rich.cells import cell_len

NOT_A_TERMINAL = 100
GAP = 2  # tabulate's simple layout puts two spaces between columns
NBSP = "\u00a0"
NBHYPHEN = "\u2011"  # "redis-server", "6.1.0-28-amd64": a hyphen inside a word is not a break
_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
# a number and the unit or word that belongs to it stay on one line
_FIGURE = re.compile(
    r"(?<![\w.])([<>~]?[\d][\d,.]*)\s+(B|KiB|MiB|GiB|TiB|kB|MB|GB|ms|µs|s|x|%|ops/s|calls|vCPUs?)(?=$|[\s,;:)/-])"
)


def terminal_width(stream: Any = None) -> int:
    """COLUMNS when set, the terminal's width when writing to one, else 100."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = stream or sys.stdout
    if hasattr(stream, "isatty") and stream.isatty():
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError):
            pass
    return NOT_A_TERMINAL


def glue(text: str) -> str:
    """Join each figure to its unit with a no-break space, and keep hyphenated words whole:
    wrapping splits neither."""
    return _HYPHEN.sub(NBHYPHEN, _FIGURE.sub(lambda m: f"{m.group(1)}{NBSP}{m.group(2)}", text))


def unglue(text: str) -> str:
    return text.replace(NBSP, " ").replace(NBHYPHEN, "-")


def _cells(cell: Any) -> list[str]:
    return str(cell if cell is not None else "").split("\n")


def _longest_word(cell: Any) -> int:
    return max((cell_len(word) for line in _cells(glue(str(cell))) for word in line.split(" ")), default=0)


def _natural(cell: Any) -> int:
    return max((cell_len(line) for line in _cells(cell)), default=0)


def widths_for(headers: list[str], rows: list[list[Any]], width: int) -> list[int] | None:
    """Column widths that keep the table within `width` without breaking a word or a figure,
    narrowing the widest column first; None when even the narrowest layout is too wide."""
    columns = list(zip(headers, *rows)) if rows else [(h,) for h in headers]
    natural = [max(_natural(c) for c in col) for col in columns]
    least = [max(_longest_word(c) for c in col) for col in columns]
    budget = width - GAP * (len(columns) - 1)
    if sum(least) > budget:
        return None
    sizes = list(natural)
    while sum(sizes) > budget:
        widest = max(range(len(sizes)), key=lambda i: (sizes[i] - least[i] > 0, sizes[i]))
        if sizes[widest] <= least[widest]:
            return None
        sizes[widest] -= 1
    return sizes


def table(headers: list[str], rows: list[list[Any]], width: int) -> str | None:
    """The table in tabulate's simple layout within `width`, or None when it cannot fit."""
    sizes = widths_for(headers, rows, width)
    if sizes is None:
        return None
    glued_rows = [[glue(str(c)) if c is not None else "" for c in row] for row in rows]
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0  # headers get no extra width
    try:
        text = tabulate_module.tabulate(
            glued_rows,
            headers=[glue(h) for h in headers],
            tablefmt="simple",
            disable_numparse=True,
            maxcolwidths=sizes,
            maxheadercolwidths=sizes,
        )
    finally:
        tabulate_module.MIN_PADDING = padding
    return "\n".join(line.rstrip() for line in unglue(text).split("\n"))


def paragraph(text: str, width: int, indent: str = "", rest: str | None = None) -> str:
    """Prose wrapped to `width` at spaces, figures kept whole."""
    wrapped = textwrap.fill(
        glue(text),
        width,
        initial_indent=indent,
        subsequent_indent=indent if rest is None else rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return unglue(wrapped)
