"""Backends: the engines that run a side. Which backend runs which side is the side
registry's business (explorer/sides.py); this module only constructs one by side name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from explorer.backends.base import Backend


def get_backend(side: str) -> Backend:
    from explorer.sides import backend_for

    return backend_for(side)
