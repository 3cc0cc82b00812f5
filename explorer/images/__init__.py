"""Offline builds: a Debian root filesystem, the Docker image made from it, and (for the VM
side) the kernel, initramfs and disk. Everything is cached by content hash."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from explorer.errors import BuildError, CacheUnusable
from explorer.images.process import run_session

SETUP_HINT = "run scripts/setup-host"


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


def run_tool(argv: list[str], what: str, hint: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A build tool, in a session of its own (ended whole on a timeout or an interrupt); a
    missing tool, a failure or a timeout becomes a BuildError carrying the tail of its output."""
    try:
        done = run_session(argv, **kwargs)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return done
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: {argv[0]} is not installed", hint=hint or SETUP_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: {argv[0]} did not finish in {exc.timeout:.0f}s", hint=hint) from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-10:])
        raise BuildError(f"{what} failed ({' '.join(argv)} exited {exc.returncode}):\n{tail}", hint=hint) from exc


VM_FILESYSTEM = "ext4"  # what make_ext4 makes: the filesystem of every VM disk explorer builds


def make_ext4(root: Path, raw: Path, size: int, entries: int, label: str, what: str, **kwargs: Any) -> None:
    """An ext4 filesystem of `size` bytes in the sparse file `raw`, holding `root` (mke2fs -d: no
    loop device; owners, modes and xattrs kept; the root directory root's), with inodes for
    twice `entries` and more."""
    inodes = max(size // 16384, entries * 2 + 16384)
    argv = ["mke2fs", "-q", "-t", VM_FILESYSTEM, "-b", "4096", "-N", str(inodes), "-L", label, "-E", "root_owner=0:0"]
    run_tool([*argv, "-d", str(root), "-F", str(raw), f"{size // 1024}k"], what, **kwargs)


def make_overlay(disk: Path, overlay: Path) -> None:
    """A throwaway qcow2 overlay backed by the cached disk, which so stays pristine."""
    run_tool(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(overlay)],
        f"creating an overlay on {disk}",
        timeout=60,
    )
