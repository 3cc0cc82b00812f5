"""Every run kept: the results directory, where `run` and `density` save their document each
time without being asked, and where `report` with no file and `results` read them back.

The directory follows the XDG convention ($XDG_DATA_HOME/explorer/results, by default
~/.local/share/explorer/results): results are data the user keeps, not a cache, so
`explorer clean` (even with --cache) never touches them. $EXPLORER_RESULTS or --results-dir
put it elsewhere. A file is named by scenario, UTC time and host, and appears whole or not at
all (written aside, then renamed: files.write_text).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer import document
from explorer.errors import UsageError
from explorer.output import files
from explorer.result import DensityResult, Result

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


def file_name(doc: Result | DensityResult) -> str:
    """<scenario>[-density]-<UTC time>-<host>.json, from the document's own facts."""
    try:
        when = dt.datetime.fromisoformat(str(doc.started_at)).astimezone(dt.UTC)
    except ValueError:
        when = dt.datetime.now(dt.UTC)
    kind = "-density" if isinstance(doc, DensityResult) else ""
    return f"{_safe(doc.scenario.name)}{kind}-{when:%Y%m%dT%H%M%SZ}-{_safe(doc.host.hostname)}.json"


def keep(doc: Result | DensityResult, folder: Path) -> Path:
    """Write `doc` into the results directory; a second run in the same second gets a suffix."""
    path = folder / file_name(doc)
    n = 1
    while path.exists():
        n += 1
        path = folder / file_name(doc).replace(".json", f"-{n}.json")
    files.write_text(str(path), written(doc), "the kept result", UsageError)
    return path


def written(doc: Result | DensityResult) -> str:
    """A document as explorer writes it: JSON, by its schema's field names."""
    return doc.model_dump_json(by_alias=True, indent=2) + "\n"


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


@dataclass(frozen=True)
class Listing:
    """The kept documents, oldest first, and those explorer wrote that do not fit their schema
    (the file and what is wrong), which the listing refuses rather than guesses at."""

    found: list[Kept]
    unfit: list[str]


def _schema(path: Path) -> str | None:
    """The file's `schema` where it is an explorer document (None: not JSON, or not explorer's)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    schema = raw.get("schema") if isinstance(raw, dict) else None
    return schema if isinstance(schema, str) and schema.startswith("explorer.") else None


def _read(path: Path) -> Kept | None:
    """A kept file's facts; None for a file that is not an explorer document; UsageError (exit 2)
    for one that is but does not fit its schema."""
    schema = _schema(path)
    if schema is None:
        return None
    doc: Result | DensityResult
    doc = document.load_density(path) if schema.startswith("explorer.density") else document.load_result(path)
    accels = sorted({s.accel for s in doc.sides.values() if s.kind == "vm" and s.accel})
    return Kept(
        path=path,
        when=doc.started_at or "?",
        scenario=doc.scenario.name,
        host=doc.host.hostname,
        sides=list(doc.sides),
        accel=", ".join(a.upper() for a in accels) or "-",
        kind="density" if isinstance(doc, DensityResult) else "run",
    )


def listing(folder: Path) -> Listing:
    """Every explorer document in the directory, oldest first (by the time each records), and
    those that do not fit."""
    if not folder.is_dir():
        return Listing([], [])
    found, unfit = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            one = _read(path)
        except UsageError as exc:
            unfit.append(str(exc))
            continue
        if one is not None:
            found.append(one)
    return Listing(sorted(found, key=lambda k: (k.when, k.path.name)), unfit)


LISTING = "explorer.results/1"


def listing_json(kept: Listing, folder: Path) -> str:
    """The listing as one JSON document: the folder, each kept file's facts, those that do not fit."""
    doc = {
        "schema": LISTING,
        "folder": str(folder),
        "results": [{**dataclasses.asdict(k), "path": str(k.path)} for k in kept.found],
        "unfit": kept.unfit,
    }
    return json.dumps(doc, indent=2)


def kept(folder: Path) -> list[Kept]:
    """Every explorer document in the directory that fits its schema, oldest first."""
    return listing(folder).found


def latest(folder: Path) -> Path:
    """The newest kept run result (not a density one); exit 2 when there is none."""
    runs = [k for k in kept(folder) if k.kind == "run"]
    if not runs:
        raise UsageError(
            f"no kept result in {folder}",
            hint="explorer run SCENARIO keeps one there; or name a result file",
        )
    return runs[-1].path
