"""The inside probe's binary: explorer-inside.c built with the host's gcc as one static program
(the sides' images hold no Python and no C library of ours), kept in explorer's cache under the
content hash of its source and its compile flags, so that a second build is a lookup.

Nothing else of the host is in the key: another gcc or C library builds a different binary that
does the same calls, and `explorer clean --cache` is the way to make it again."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from explorer.cache import cache_dir
from explorer.errors import BuildError
from explorer.tools import run_tool

SOURCE = "explorer-inside.c"
FLAGS = ("-O1", "-static", "-s", "-std=gnu11", "-Wall", "-Wextra", "-Werror")  # -s: no symbols to deliver
BUILD_TIMEOUT_S = 120.0
HINT = "install gcc and the static C library (Debian: apt-get install gcc libc6-dev; scripts/setup-host does)"


def source_text() -> bytes:
    return resources.files("explorer.probes.inside").joinpath(SOURCE).read_bytes()


def content_key(source: bytes, flags: tuple[str, ...] = FLAGS) -> str:
    """What names a build: the source's bytes and the flags it is compiled with."""
    digest = hashlib.sha256(source)
    digest.update(b"\0" + "\0".join(flags).encode())
    return digest.hexdigest()[:16]


def cached_path(source: bytes | None = None) -> Path:
    """Where the build of this source lives in the cache (it may not exist yet)."""
    return cache_dir("inside") / f"explorer-inside-{content_key(source or source_text())}"


def build() -> Path:
    """The probe's binary: the cached one, else built now (atomically: a half-written file is never
    found under the final name). Raises BuildError when gcc or libc.a is missing, or gcc fails."""
    source = source_text()
    final = cached_path(source)
    if final.is_file() and os.access(final, os.X_OK):
        return final
    gcc = check_compiler()
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".build-") as tmp:
        src = Path(tmp) / SOURCE
        src.write_bytes(source)
        out = Path(tmp) / final.name
        run_tool([gcc, *FLAGS, "-o", str(out), str(src)], "building the inside probe", HINT, timeout=BUILD_TIMEOUT_S)
        out.chmod(0o755)
        os.replace(out, final)
    return final


def check_compiler() -> str:
    """gcc's path, once it is known to have a static C library to link against."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError("the inside probe cannot be built: gcc is not installed", hint=HINT)
    found = run_tool([gcc, "-print-file-name=libc.a"], "looking for the static C library", HINT, timeout=30)
    if not os.path.isabs(found.stdout.strip()):  # gcc echoes the bare name back when it has none
        raise BuildError("the inside probe cannot be built: the static C library (libc.a) is missing", hint=HINT)
    return gcc
