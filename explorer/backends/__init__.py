"""Backends by name, imported lazily so that libvirt is only loaded when the VM side is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from explorer.errors import UsageError

if TYPE_CHECKING:
    from explorer.backends.base import Backend

BACKENDS = {
    "container": "explorer.backends.docker:DockerBackend",
    "vm": "explorer.backends.libvirt:LibvirtBackend",
}
SIDES = tuple(BACKENDS)


def get_backend(side: str) -> Backend:
    try:
        module_name, class_name = BACKENDS[side].split(":")
    except KeyError:
        raise UsageError(f"unknown side {side!r}; known: {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module_name), class_name)()
