"""What a built root filesystem holds, read from its dpkg database with Python (no chroot).

The workload's packages are the scenario's packages and everything they pull in that the
OS would not have anyway: the dependency closure (Depends and Pre-Depends, every installed
alternative, virtual packages through Provides) of the scenario's packages, minus the
closure of the OS itself (explorer's OS packages and every Essential, required or important
package). Their size is measured, not estimated: the allocated bytes of the files dpkg
lists for them (each inode once), which also honours the documentation excludes;
`Installed-Size` is apt's estimate from before the excludes.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from explorer.images.rootfs.guest_config import resolve_in_root

BASE_PRIORITIES = ("required", "important")


@dataclass(frozen=True)
class Package:
    name: str
    priority: str
    essential: bool
    depends: tuple[tuple[str, ...], ...]  # each entry: alternatives
    provides: tuple[str, ...]
    installed_kib: int


def parse_status(text: str) -> dict[str, Package]:
    """Installed packages in a /var/lib/dpkg/status text, by name."""
    packages: dict[str, Package] = {}
    for paragraph in re.split(r"\n\s*\n", text):
        fields = _fields(paragraph)
        if not fields.get("Status", "").endswith(" installed") or "Package" not in fields:
            continue
        depends = _relations(fields.get("Pre-Depends", "")) + _relations(fields.get("Depends", ""))
        provides = tuple(alt[0] for alt in _relations(fields.get("Provides", "")))
        packages[fields["Package"]] = Package(
            fields["Package"],
            fields.get("Priority", ""),
            fields.get("Essential") == "yes",
            depends,
            provides,
            int(fields.get("Installed-Size", "0") or 0),
        )
    return packages


def _fields(paragraph: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in paragraph.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _relations(text: str) -> tuple[tuple[str, ...], ...]:
    """`a (>= 1) | b:any, c` -> (("a", "b"), ("c",))."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        names = [re.split(r"[\s(\[<]", alt.strip(), maxsplit=1)[0].split(":")[0] for alt in item.split("|")]
        out.append(tuple(name for name in names if name))
    return tuple(out)


def closure(packages: dict[str, Package], roots: list[str] | tuple[str, ...]) -> set[str]:
    """`roots` and every installed package they depend on, directly or not."""
    providers: dict[str, list[str]] = {}
    for package in packages.values():
        for virtual in package.provides:
            providers.setdefault(virtual, []).append(package.name)
    seen: set[str] = set()
    todo = [name for name in roots if name in packages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for alternatives in packages[name].depends:
            for alt in alternatives:
                todo += [alt] if alt in packages else providers.get(alt, [])
    return seen


def workload_packages(
    packages: dict[str, Package], scenario_packages: tuple[str, ...], os_packages: tuple[str, ...]
) -> list[str]:
    """The packages there only because of the scenario (see the module docstring)."""
    base = list(os_packages) + [p.name for p in packages.values() if p.essential or p.priority in BASE_PRIORITIES]
    return sorted(closure(packages, scenario_packages) - closure(packages, base))


def package_files(root: Path, name: str) -> list[str]:
    """The paths dpkg lists for an installed package (`name.list` or `name:ARCH.list`)."""
    info = root / "var/lib/dpkg/info"
    for candidate in [info / f"{name}.list", *sorted(info.glob(f"{name}:*.list"))]:
        if candidate.is_file():
            return [line for line in candidate.read_text(errors="replace").splitlines() if line]
    return []


def files_bytes(root: Path, paths: list[str]) -> int:
    """Allocated bytes of the regular files among `paths` (guest paths), each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in paths:
        parent = resolve_in_root(root, os.path.dirname(path))
        if parent is None:
            continue
        try:
            info = os.lstat(parent / os.path.basename(path))
        except OSError:
            continue  # excluded by a dpkg path-exclude
        if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def tree_bytes(path: Path) -> tuple[int, int]:
    """Allocated bytes under `path` (hard links once) and its number of entries."""
    seen: set[tuple[int, int]] = set()
    total = entries = 0
    for directory, dirs, files in os.walk(path):
        entries += len(dirs) + len(files)
        for name in dirs + files:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total, entries
