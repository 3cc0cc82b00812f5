"""Every run kept: the results directory, where `run` and `density` save their document each
time without being asked, and where `report` with no file and `results` read them back.

The directory follows the XDG convention ($XDG_DATA_HOME/explorer/results, by default
~/.local/share/explorer/results): results are data the user keeps, not a cache, so
`explorer clean` (even with --cache) never touches them. $EXPLORER_RESULTS or --results-dir
put it elsewhere. A file is named by scenario, UTC time and host, and appears whole or not at
all (written aside, then renamed: files.write_text).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.errors import UsageError
from explorer.output import files

ENV = "EXPLORER_RESULTS"
HINT = f"set {ENV} or --results-dir to a writable directory (default $XDG_DATA_HOME/explorer/results)"


def directory(given: str | None = None) -> Path:
    """--results-dir, else $EXPLORER_RESULTS, else $XDG_DATA_HOME/explorer/results."""
    if given:
        return Path(given)
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "explorer" / "results"


def check(folder: Path) -> Path:
    """Made if missing and known to be writable, before anything is measured (exit 2 if not)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"the results directory {folder} is not a directory", hint=HINT)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the results directory {folder}: {exc.strerror}", hint=HINT) from None
    files.check_writable(str(folder / "result.json"), "the results directory")
    return folder


def _safe(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text or "unknown")).strip("-.") or "unknown"


def file_name(doc: dict[str, Any]) -> str:
    """<scenario>[-density]-<UTC time>-<host>.json, from the document's own facts."""
    started = doc.get("started_at")
    try:
        when = dt.datetime.fromisoformat(str(started)).astimezone(dt.UTC)
    except ValueError:
        when = dt.datetime.now(dt.UTC)
    kind = "-density" if str(doc.get("schema", "")).startswith("explorer.density") else ""
    host = (doc.get("host") or {}).get("hostname") or doc.get("hostname")
    scenario = (doc.get("scenario") or {}).get("name") if isinstance(doc.get("scenario"), dict) else doc.get("scenario")
    return f"{_safe(scenario)}{kind}-{when:%Y%m%dT%H%M%SZ}-{_safe(host)}.json"


def keep(doc: dict[str, Any], folder: Path) -> Path:
    """Write `doc` into the results directory; a second run in the same second gets a suffix."""
    path = folder / file_name(doc)
    n = 1
    while path.exists():
        n += 1
        path = folder / file_name(doc).replace(".json", f"-{n}.json")
    files.write_text(str(path), json.dumps(doc, indent=2) + "\n", "the kept result", UsageError)
    return path


@dataclass(frozen=True)
class Kept:
    """One kept file, as the listing shows it."""

    path: Path
    when: str
    scenario: str
    host: str
    sides: list[str]
    accel: str
    kind: str


def _read(path: Path) -> Kept | None:
    """A kept file's facts; None for a file that is not an explorer document."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("explorer."):
        return None
    sides = got if isinstance(got := doc.get("sides"), dict) else {}
    accels = sorted({str(s.get("accel")) for s in sides.values() if isinstance(s, dict) and s.get("kind") == "vm"})
    scenario = doc.get("scenario")
    return Kept(
        path=path,
        when=str(doc.get("started_at") or "?"),
        scenario=str(scenario.get("name") if isinstance(scenario, dict) else scenario or "?"),
        host=str((doc.get("host") or {}).get("hostname") or "?"),
        sides=list(sides),
        accel=", ".join(a.upper() for a in accels) or "-",
        kind="density" if str(doc["schema"]).startswith("explorer.density") else "run",
    )


def kept(folder: Path) -> list[Kept]:
    """Every explorer document in the directory, oldest first (by the time each records)."""
    if not folder.is_dir():
        return []
    found = [k for k in (_read(p) for p in folder.glob("*.json")) if k is not None]
    return sorted(found, key=lambda k: (k.when, k.path.name))


def latest(folder: Path) -> Path:
    """The newest kept run result (not a density one); exit 2 when there is none."""
    runs = [k for k in kept(folder) if k.kind == "run"]
    if not runs:
        raise UsageError(
            f"no kept result in {folder}",
            hint="explorer run SCENARIO keeps one there; or name a result file",
        )
    return runs[-1].path
