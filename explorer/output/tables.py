"""One table layout for every report: tabulate's, for a terminal or GitHub Markdown."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate


def table(headers: list[str], rows: list[list[Any]], fmt: str, widths: list[int] | None = None) -> str:
    """tabulate's simple layout for a terminal, wrapping cells to `widths`; GitHub's for
    Markdown, whose cells cannot wrap and where a bare | ("ps -e | grep") would split one."""
    if fmt == "markdown":
        rows = [[cell.replace("|", "\\|") if isinstance(cell, str) else cell for cell in row] for row in rows]
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return tabulate(
        rows, headers=headers, tablefmt="simple", disable_numparse=True, maxcolwidths=widths, maxheadercolwidths=widths
    )
