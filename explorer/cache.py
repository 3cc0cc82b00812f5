"""explorer's cache: built images, kernels, disks and verdicts, kept by content hash under
$EXPLORER_CACHE (default ~/.cache/explorer). A bottom module: everything that builds or
caches uses it, and it uses nothing of explorer's but its errors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from explorer.errors import CacheUnusable

CACHE_HINT = "set EXPLORER_CACHE to a writable directory (default ~/.cache/explorer)"
CACHE_PARTS = ("rootfs", "vm", "kernel", "kvm", "tmp")


def cache_root() -> Path:
    """$EXPLORER_CACHE (default ~/.cache/explorer), not created."""
    return Path(os.environ.get("EXPLORER_CACHE") or Path.home() / ".cache" / "explorer")


def cache_dir(*parts: str) -> Path:
    """A directory in the cache, created on first use."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheUnusable(f"cannot create the cache directory {path}: {exc.strerror}", hint=CACHE_HINT) from exc
    return path


def check_cache() -> Path:
    """The cache root, proven writable (a file made and removed there and in each of its
    parts that exists): before a run builds for minutes, or `clean --cache` removes anything."""
    root = cache_root()
    for path in (root, *(root / part for part in CACHE_PARTS)):
        if path != root and not path.exists():
            continue
        try:
            if path == root:
                path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path, prefix=".explorer-probe-"):
                pass
        except OSError as exc:
            raise CacheUnusable(f"the cache {path} is not writable: {exc.strerror}", hint=CACHE_HINT) from exc
    return root
