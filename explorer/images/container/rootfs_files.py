"""A recipe's `files:` put into the rootfs tarball by Python's tarfile, after mmdebstrap.

Nothing here builds a command line or a hook string: a path from a scenario can never name a
host file to copy (an mmdebstrap `upload` hook once took `"/tmp/secret.txt /etc/x"` as two
paths). The paths were validated by the scenario schema (absolute, normalised); here they are
also checked against the image's own tree, so that no file lands under a symlink: the VM disk
is unpacked with tar on the host, where a symlinked parent (bookworm's /var/run -> /run) would
carry a write out of the root filesystem.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from explorer.errors import BuildError


def _key(name: str) -> str:
    """A member name as a path relative to the root: `./etc/x/` -> `etc/x`."""
    name = name.removeprefix("./").strip("/")
    return "" if name == "." else name


def _parents(relative: str) -> list[str]:
    parts = relative.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _problems(files: dict[str, str], members: dict[str, tarfile.TarInfo]) -> list[str]:
    problems = []
    linked = {_key(m.linkname) for m in members.values() if m.islnk()}
    for relative in files:
        for parent in _parents(relative):
            member = members.get(parent)
            if member is not None and not member.isdir():
                kind = f"a symlink to {member.linkname}" if member.issym() else "not a directory"
                problems.append(f"/{relative}: /{parent} is {kind} in the image; give the real path")
                break
        member = members.get(relative)
        if member is not None and not member.isfile():
            problems.append(f"/{relative}: the image has a {'directory' if member.isdir() else 'link'} there")
        elif relative in linked:
            problems.append(f"/{relative}: other files in the image are hard links to it")
    return problems


def add_files(source: Path, files: tuple[tuple[str, str], ...], output: Path) -> None:
    """Copy the tarball `source` to `output`, with `files` (absolute path -> text) added as
    root-owned 0644 files (replacing a regular file of the image), their missing parent
    directories as root-owned 0755 directories."""
    wanted = {_key(path): text.encode() for path, text in files}
    now = int(time.time())
    with tarfile.open(source, "r:") as src:
        order = src.getmembers()
        members = {_key(m.name): m for m in order}
        problems = _problems({k: "" for k in wanted}, members)
        if problems:
            raise BuildError(
                "cannot add the recipe's files to the image:\n" + "\n".join(f"  {p}" for p in problems),
                hint="workload.build.files: name paths whose parents are real directories in the image",
            )
        with tarfile.open(output, "w:", format=tarfile.PAX_FORMAT) as out:
            for member in order:
                if _key(member.name) in wanted:
                    continue  # replaced below
                out.addfile(member, src.extractfile(member) if member.isfile() else None)
            made: set[str] = set()
            for relative in sorted(wanted):
                for parent in _parents(relative):
                    if parent not in members and parent not in made:
                        made.add(parent)
                        out.addfile(_info(parent, tarfile.DIRTYPE, 0o755, 0, now))
                data = wanted[relative]
                out.addfile(_info(relative, tarfile.REGTYPE, 0o644, len(data), now), io.BytesIO(data))


def _info(relative: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo("./" + relative)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
