"""`explorer clean`: remove whatever explorer labelled, on every side whose parts answer, and
what dead builds left; say what was removed, what was kept and why, and which side could not
be reached (then the command fails: it cannot say that side is clean)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from explorer.backends import backend_for
from explorer.cache import cache_root, check_cache
from explorer.errors import BackendError, BackendUnavailable
from explorer.images import partials
from explorer.load import native
from explorer.output import results
from explorer.sides import SIDES


@dataclass
class Cleaned:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def clean_all(cache: bool = False) -> Cleaned:
    if cache:
        check_cache()  # before any image is removed: a cache that cannot be emptied stops here
    done = Cleaned()
    for side in SIDES:
        try:
            backend = backend_for(side)
        except BackendUnavailable as exc:  # a side not installed has nothing to clean
            done.notes.append(f"nothing to clean on the {side} side: it is not installed ({exc})")
            continue
        try:
            done.removed += backend.clean()
            if cache:
                done.removed += backend.remove_cached()
        except (BackendUnavailable, BackendError) as exc:
            done.unreachable.append(f"the {side} side: {exc}")
    # sides sharing an engine (runc and gvisor; the VM sides) find the same leftovers
    done.removed, done.unreachable = list(dict.fromkeys(done.removed)), list(dict.fromkeys(done.unreachable))
    done.removed += native.clean()  # the native reference's network namespaces (its copies are partials)
    root = cache_root()
    removed, kept = partials.clean_stale(root if root.is_dir() else None)
    done.removed += removed
    done.kept += kept
    if cache and root.is_dir():
        _remove_cache(root, done)
    return done


def _remove_cache(root: Path, done: Cleaned) -> None:
    """The cache removed wholly, but for the results directory where a user put it inside
    (results are kept, never cleaned: explorer/output/results.py)."""
    failures: list[str] = []
    spare = results.directory().resolve()
    _remove_all_but(root, spare, failures)
    if failures or (root.exists() and not spare.is_relative_to(root.resolve())):
        done.unreachable.append(f"the cache {root} could not be removed wholly: {'; '.join(failures[:3])}")
    else:
        kept = f" (kept the results in {spare})" if root.exists() else ""
        done.removed.append(f"cache {root}{kept}")


def _remove_all_but(root: Path, spare: Path, failures: list[str]) -> None:
    """rmtree(root), leaving `spare` and the directories that lead to it."""
    if not spare.is_relative_to(root.resolve()):
        shutil.rmtree(root, onerror=lambda _fn, path, info: failures.append(f"{path}: {info[1]}"))
        return
    if spare == root.resolve():
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            _remove_all_but(child, spare, failures)
        else:
            try:
                child.unlink()
            except OSError as exc:
                failures.append(f"{child}: {exc}")
