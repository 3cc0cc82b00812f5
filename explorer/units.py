"""The units every table, claim and plot prints in: one formatter per kind of figure."""

from __future__ import annotations


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def times(value: float) -> str:
    """A ratio: 4.1x, 120x."""
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def count(value: float) -> str:
    return f"{int(value):,}"


def plural(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
