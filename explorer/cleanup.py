"""`explorer clean`: remove whatever explorer labelled, on every backend that answers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from explorer.backends import get_backend
from explorer.backends.libvirt import WORKDIR_PREFIX
from explorer.errors import BackendUnavailable
from explorer.images import cache_dir
from explorer.sides import SIDES

TEMP_PREFIX = "explorer-"


def clean_all(cache: bool = False) -> list[str]:
    removed: list[str] = []
    for side in SIDES:
        try:
            backend = get_backend(side)
            removed += backend.clean()
            if cache and hasattr(backend, "remove_images"):
                removed += backend.remove_images()
        except (BackendUnavailable, ImportError) as exc:
            removed.append(f"nothing on the {side} side ({exc})")
    removed = list(dict.fromkeys(removed))  # sides sharing an engine find the same leftovers
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        if path.name.startswith(WORKDIR_PREFIX):
            continue  # the libvirt backend's clean() removes these, sparing VMs still starting
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"temporary {path}")
    if cache:
        root = cache_dir()
        shutil.rmtree(root, ignore_errors=True)
        removed.append(f"cache {root}")
    return removed
