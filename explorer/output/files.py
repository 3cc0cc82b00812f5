"""Files the user asked explorer to write (--output): checked before a run measures for
minutes, and written whole or not at all (a temporary name in the same directory, renamed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from explorer.errors import ExplorerError, UsageError


def check_writable(path: str, option: str) -> None:
    """A usage error (exit 2) now, rather than a lost measurement later."""
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory", hint="give a file name, e.g. result.json")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=f".{target.name}."):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write in {parent}: {exc.strerror}") from exc


def write_text(path: str, text: str, what: str, error: type[ExplorerError] = ExplorerError) -> None:
    """Write `text` to `path` atomically, whole or not at all (an interrupt or a full disk
    half-way leaves no file behind); on failure raise `error` saying what could not be written
    where."""
    target = Path(path)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)  # mkstemp's 0600 is for the name's lifetime, not the result's
        os.replace(temp, target)
        temp = None
    except OSError as exc:
        raise error(
            f"{what} could not be written to {path}: {exc.strerror}; the report above is complete",
            hint="run `explorer run ... --format json > FILE` to keep it another way",
        ) from exc
    finally:
        if temp is not None:  # failed or interrupted before the rename
            Path(temp).unlink(missing_ok=True)
