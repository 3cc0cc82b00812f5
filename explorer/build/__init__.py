"""Offline builds: a Debian root filesystem, the Docker image made from it, and (for the VM
side) the kernel, initramfs and disk. Everything is cached by content hash."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """$EXPLORER_CACHE (default ~/.cache/explorer), created on first use."""
    root = Path(os.environ.get("EXPLORER_CACHE") or Path.home() / ".cache" / "explorer")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
