"""Offline builds: a Debian root filesystem, the Docker image made from it, and (for the VM
side) the kernel, initramfs and disk. Everything is cached by content hash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from explorer.errors import BuildError

SETUP_HINT = "run scripts/setup-host"


def cache_dir(*parts: str) -> Path:
    """$EXPLORER_CACHE (default ~/.cache/explorer), created on first use."""
    root = Path(os.environ.get("EXPLORER_CACHE") or Path.home() / ".cache" / "explorer")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_tool(argv: list[str], what: str, hint: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A build tool; a missing tool, a failure or a timeout becomes a BuildError carrying
    the tail of what the tool printed."""
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: {argv[0]} is not installed", hint=hint or SETUP_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: {argv[0]} did not finish in {exc.timeout:.0f}s", hint=hint) from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-10:])
        raise BuildError(f"{what} failed ({' '.join(argv)} exited {exc.returncode}):\n{tail}", hint=hint) from exc
