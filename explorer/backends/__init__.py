"""Backends: each side's parts, assembled (one small file per side). Which file serves which
side is the registry's business (explorer/sides.py); base.py is the assembled Backend, and
backend_for() the one way from a side's name to it."""

from __future__ import annotations

import importlib
from typing import Any

from explorer.backends.base import Backend
from explorer.errors import BackendUnavailable
from explorer.sides import get

__all__ = ["Backend", "backend_for"]


def backend_for(name: str) -> Backend[Any]:
    """The side's backend, assembled from its parts; BackendUnavailable where an optional
    dependency of one of them (libvirt-python, say) is not installed. Its handle type is the
    side's own (a Docker container, a RunningVM...): a caller holds it through the Backend, which
    keeps the handle to itself, so the registry's answer says Any there, explicitly."""
    side = get(name)
    module_name, function = side.backend.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"cannot load its backend: {exc}", hint="make venv (pip install -e .)") from None
    backend: Backend[Any] = getattr(module, function)(side)
    return backend
