"""Where builds keep what is not finished yet, and how `explorer clean` tells a dead build's
remains from a live one's.

Every partial (a rootfs being built, a VM disk, a kernel download, mmdebstrap's chroot, the
QEMU floor's work dir) is a directory named PREFIX + explorer's PID + '-' + random: finished
results are renamed out of it, and it is removed when its build ends, however it ends. What a
kill -9 leaves is stale once its PID is gone and no process uses it (cwd, root, argument or
open file under it); anything still mounted under it is never removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from explorer.model import owner_alive

ROOTFS = "explorer-rootfs-"  # in the cache's rootfs/: the tarball being built
MMDEBSTRAP = "explorer-build-"  # in the system temp dir: mmdebstrap's TMPDIR, its chroot
VM_DISK = "vm-"  # in the cache's tmp/
KERNEL = "kernel-"  # in the cache's tmp/
FLOOR = "explorer-floor-"  # in the system temp dir: the bare-QEMU floor measurement
NATIVE = "native-"  # in the cache's tmp/: the native reference's root filesystem, unpacked or a run's copy
# A partial without a PID in its name (made by an older explorer) is stale only once this old
# and unused: nothing else says whose it is. /tmp/mmdebstrap.* is never touched: explorer's
# builds give mmdebstrap a TMPDIR of their own, so one there is someone else's.
LEGACY_AGE_S = 3600.0


def make_dir(parent: Path | None, prefix: str) -> Path:
    """A fresh directory PREFIX-PID-xxxx in `parent` (None: the system temp dir): its owner's."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


@contextlib.contextmanager
def build_dir(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A fresh directory PREFIX-PID-xxxx in `parent` (None: the system temp dir), removed after."""
    path = make_dir(parent, prefix)
    try:
        yield path
    finally:
        remove(path)


def owner_pid(path: Path, prefix: str) -> str | None:
    rest = path.name[len(prefix) :]
    pid = rest.split("-", 1)[0]
    return pid if pid.isdigit() and "-" in rest else None


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    root, found = str(path), []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")  # \040 for a space
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove(path: Path) -> str | None:
    """Remove `path`, first unmounting what a killed mmdebstrap left mounted in its chroot
    (only below `path`: ours); the reason if it could not be removed (never while a mount stays)."""
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True, timeout=60)
    if mounts_under(path):
        return "something is still mounted under it"
    failures: list[str] = []
    shutil.rmtree(path, onerror=lambda _fn, where, info: failures.append(f"{where}: {info[1]}"))
    return f"could not be removed: {failures[0]}" if path.exists() and failures else None


def users(path: Path) -> list[str]:
    """Processes whose cwd, root, arguments or open files are under `path` ("PID name")."""
    root = str(path)
    inside = lambda text: text == root or text.startswith(root + "/")
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            places = [proc.cwd(), os.readlink(f"/proc/{proc.pid}/root"), *proc.cmdline()]
            if any(inside(p) for p in places) or any(inside(f.path) for f in proc.open_files()):
                found.append(f"{proc.pid} {proc.info['name']}")
        except (OSError, psutil.Error):
            continue
    return found


def stale(path: Path, prefix: str) -> tuple[bool, str]:
    """(whether `path` is a dead build's remains, why it is or is not)."""
    pid = owner_pid(path, prefix)
    if pid is not None and (owner_alive(pid) or int(pid) == os.getpid()):
        return False, f"its explorer (PID {pid}) still runs"
    if pid is None and time.time() - path.stat().st_mtime < LEGACY_AGE_S:
        return False, "no owner PID in its name, and younger than an hour"
    using = users(path)
    if using:
        return False, f"in use by {', '.join(using[:3])}"
    return True, f"its explorer (PID {pid}) is gone" if pid else "no process uses it"


def locations(cache: Path | None) -> list[tuple[Path, str]]:
    """(directory, prefix) of every kind of partial."""
    temp = Path(tempfile.gettempdir())
    places = [(temp, MMDEBSTRAP), (temp, FLOOR)]
    if cache is not None:
        places += [
            (cache / "rootfs", ROOTFS),
            (cache / "tmp", VM_DISK),
            (cache / "tmp", KERNEL),
            (cache / "tmp", NATIVE),
        ]
    return places


def clean_stale(cache: Path | None) -> tuple[list[str], list[str]]:
    """Remove every stale partial: (what was removed, what was kept and why)."""
    removed, kept = [], []
    for directory, prefix in locations(cache):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(f"{prefix}*")):
            if not path.is_dir() or path.is_symlink():
                continue
            is_stale, why = stale(path, prefix)
            if not is_stale:
                kept.append(f"{path} ({why})")
            elif (problem := remove(path)) is None:
                removed.append(f"partial build {path} ({why})")
            else:
                kept.append(f"{path} ({problem})")
    return removed, kept
