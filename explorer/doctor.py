"""`explorer doctor`: what this host can and cannot do for explorer, each with its fix.

The rows come from the sides' parts (each engine and source says what it needs), so a side
added to the registry brings its own checks; a part two sides share is checked once. A check
of a side whose package some distributions lack (gVisor, Vagrant), or one marked optional
(KVM), only warns."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from explorer.backends import backend_for
from explorer.cache import cache_root, check_cache
from explorer.errors import BackendUnavailable, ExplorerError
from explorer.readiness.strategies import libpq
from explorer.sides import SIDES

MIN_FREE_BYTES = 4 * 1024**3


def _libpq() -> str:
    version = libpq().version()  # e.g. 150018: 15.18
    return f"libpq {version // 10000}.{version % 10000} (PostgreSQL readiness: PQping)"


def _cache() -> str:
    return f"{check_cache()} is writable"


def _disk() -> str:
    root = cache_root()
    while not root.exists() and root != root.parent:  # the filesystem it would be made on
        root = root.parent
    free = shutil.disk_usage(root).free
    detail = f"{free / 1024**3:.1f} GiB free in {root}"
    if free < MIN_FREE_BYTES:
        raise ExplorerError(detail, hint=f"free at least {MIN_FREE_BYTES // 1024**3} GiB or set EXPLORER_CACHE")
    return detail


COMMON: list[tuple[str, bool, Callable[[], str]]] = [
    ("libpq", False, _libpq),
    ("cache (EXPLORER_CACHE)", True, _cache),
    ("free disk", True, _disk),
]


def checks() -> list[tuple[str, bool, Callable[[], str]]]:
    """(name, required, check) from every side's parts, each name once (required if any side
    that has it requires it), then the host-wide checks."""
    found: dict[str, tuple[bool, Callable[[], str]]] = {}
    for name, side in SIDES.items():
        try:
            rows = backend_for(name).doctor_checks()
        except BackendUnavailable as exc:
            rows = []
            found[f"the {name} side"] = (side.package is None, _failing(str(exc), exc.hint or "make venv"))
        for row in rows:
            required = not row.optional and side.package is None
            known = found.get(row.name)
            found[row.name] = (required or (known is not None and known[0]), known[1] if known else row.run)
    return [(name, required, run) for name, (required, run) in found.items()] + COMMON


def _failing(message: str, hint: str) -> Callable[[], str]:
    def fail() -> str:
        raise ExplorerError(message, hint=hint)

    return fail


def diagnose() -> tuple[list[list[str]], bool]:
    """One row per check; ok is False when a required check failed."""
    rows, ok = [], True
    for name, required, check in checks():
        try:
            status, detail = "ok", check()
        except ExplorerError as exc:
            status = "MISSING" if required else "warning"
            detail = f"{exc}" + (f" -> fix: {exc.hint}" if exc.hint else "")
            ok = ok and not required
        except ImportError as exc:
            status, detail = ("MISSING" if required else "warning"), f"{exc} -> fix: make venv (pip install -e .)"
            ok = ok and not required
        rows.append([name, status, detail])
    return rows, ok
