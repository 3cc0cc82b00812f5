"""Shared by the inside probe's tests: the probe built once per session into a private cache and
copied where any user may run it (a plain user runs it through setpriv too), and the independent
ways of running it (setpriv, strace)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from explorer.errors import BuildError
from explorer.probes.inside import build

NOBODY = (65534, 65534)
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY[0]}", f"--regid={NOBODY[1]}", "--clear-groups"]


@functools.cache
def _built() -> tuple[Path | None, str]:
    """(the probe where anyone may run it, "") or (None, why it could not be built)."""
    cache = tempfile.mkdtemp(prefix="explorer-inside-cache-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    saved = os.environ.get("EXPLORER_CACHE")
    os.environ["EXPLORER_CACHE"] = cache
    try:
        binary = build.build()
    except BuildError as exc:
        return None, f"{exc} ({exc.hint})"
    finally:
        if saved is None:
            os.environ.pop("EXPLORER_CACHE")
        else:
            os.environ["EXPLORER_CACHE"] = saved
    public = Path(tempfile.mkdtemp(prefix="explorer-inside-"))
    atexit.register(shutil.rmtree, public, ignore_errors=True)
    public.chmod(0o755)  # mkdtemp's 0700 would keep a plain user out
    copy = public / "explorer-inside"
    shutil.copy2(binary, copy)
    copy.chmod(0o755)
    return copy, ""


def probe_binary() -> Path:
    """The built probe (skips the test, with why, where gcc or libc.a is missing)."""
    binary, why = _built()
    if binary is None:
        pytest.skip(why)
    return binary


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the probe as root and drops to nobody: needs root")
