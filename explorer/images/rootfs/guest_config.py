"""How the VM's init starts the workload exactly as Docker would: the argv (ENTRYPOINT then
CMD, a scenario's command replacing CMD), the user, the environment and the workdir.

All of it is resolved at build time, against the image's own files, into a config file the
guest init reads as data (never as shell code): `/.explorer/workload.conf`, one
`KEY VALUE` per line, VALUE with `\\` and newline escaped as `\\\\` and `\\n`.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import BuildError
from explorer.model import Artifact
from explorer.scenario import Scenario

BUSYBOX = "/.explorer/busybox"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's


@dataclass(frozen=True)
class GuestUser:
    """Who the workload runs as. `initgroups`: take supplementary groups from /etc/group by
    name, as Docker does when the user has a passwd entry and no explicit group."""

    uid: int
    gid: int
    home: str = "/"
    initgroups: bool = False


def compose_argv(entrypoint: list[str], cmd: list[str], override: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Docker's rule: ENTRYPOINT argv followed by CMD argv; a run's command replaces CMD."""
    argv = list(entrypoint) + list(override or cmd)
    if not argv:
        raise BuildError("the image has neither an ENTRYPOINT nor a CMD, and the scenario gives no command")
    return argv


def _table(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            rows.append(parts)
    return rows


def resolve_user(spec: str, passwd: str, group: str) -> GuestUser:
    """USER `name|uid[:group|gid]` resolved against the image's /etc/passwd and /etc/group,
    the way runc does: unknown numeric ids are used as they are, unknown names are errors."""
    user, _, grp = (spec or "root").partition(":")
    entry = next((r for r in _table(passwd, 7) if r[0] == user or (user.isdigit() and r[2] == user)), None)
    if entry is None and not user.isdigit():
        raise BuildError(f"the image's user {user!r} is not in its /etc/passwd")
    uid = int(entry[2]) if entry else int(user)
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry and entry[5] else "/"
    if grp:
        row = next((r for r in _table(group, 4) if r[0] == grp or (grp.isdigit() and r[2] == grp)), None)
        if row is None and not grp.isdigit():
            raise BuildError(f"the image's group {grp!r} is not in its /etc/group")
        gid = int(row[2]) if row else int(grp)
    return GuestUser(uid, gid, home, initgroups=entry is not None and not grp)


def guest_env(image_env: list[str], home: str, hostname: str) -> list[str]:
    """The image's Env, completed as Docker completes it (PATH, HOSTNAME, HOME if unset)."""
    env = [item for item in image_env if "=" in item]
    names = {item.split("=", 1)[0] for item in env}
    extra = [f"{name}={value}" for name, value in (("PATH", DEFAULT_PATH), ("HOSTNAME", hostname)) if name not in names]
    tail = [] if "HOME" in names else [f"HOME={home}"]
    return extra + env + tail


def resolve_in_root(root: Path, path: str, hops: int = 40) -> Path | None:
    """The host path of guest `path` with symlinks followed inside `root` (absolute links
    point into the image, not the host), or None if it does not exist."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = "/"
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = posixpath.dirname(current)
            continue
        host = root / posixpath.join(current, part).lstrip("/")
        if host.is_symlink():
            hops -= 1
            target = os.readlink(host)
            if hops < 0:
                return None
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            current = "/" if target.startswith("/") else current
        elif host.exists():
            current = posixpath.join(current, part)
        else:
            return None
    return root / current.lstrip("/")


def find_executable(root: Path, name: str, path_env: str, workdir: str = "/") -> str:
    """Where `name` is run from, searched like execvp in the image's PATH."""
    if "/" in name:
        return name
    for directory in path_env.split(":"):
        candidate = posixpath.join(workdir, directory or ".", name)
        found = resolve_in_root(root, candidate)
        if found is not None and found.is_file() and found.stat().st_mode & 0o111:
            return candidate
    raise BuildError(f"the workload's executable {name!r} is not in the image's PATH ({path_env})")


def exec_argv(argv: list[str], executable: str, env: list[str], user: GuestUser) -> list[str]:
    """The argv the guest init runs: a clean environment, then the user switch, then the
    workload (argv[0] kept as given, so the process looks as it does under Docker)."""
    chain = [BUSYBOX, "env", "-i", *env]
    if user.initgroups or (user.uid, user.gid) == (0, 0):
        switch = [] if (user.uid, user.gid) == (0, 0) else ["-c", f"{user.uid}:{user.gid}"]
        return chain + [
            BUSYBOX,
            "start-stop-daemon",
            "-S",
            "-p",
            "/.explorer/none.pid",
            *switch,
            "-x",
            executable,
            "-a",
            argv[0],
            "--",
            *argv[1:],
        ]
    # No passwd entry (or an explicit group): no supplementary groups, as under Docker.
    return chain + [BUSYBOX, "nsenter", "-S", str(user.uid), "-G", str(user.gid), "--", executable, *argv[1:]]


def encode(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def decode(value: str) -> str:
    """The inverse of `encode` (what the guest's `printf %b` does with these two escapes)."""
    out, index = [], 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            out.append("\n" if value[index + 1] == "n" else value[index + 1])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def workload_config(argv: list[str], workdir: str, port: int, hostname: str) -> str:
    lines = ["# explorer workload config: KEY VALUE, VALUE with \\\\ and \\n escaped"]
    lines += [f"hostname {encode(hostname)}", f"port {port}", f"workdir {encode(workdir)}"]
    lines += [f"arg {encode(item)}" for item in argv]
    return "\n".join(lines) + "\n"


def parse_config(text: str) -> dict[str, list[str]]:
    """What the guest init reads from the config (tests check the round trip with it)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if not key.startswith("#"):
            out.setdefault(key, []).append(decode(value))
    return out


def workload_exec(root: Path, scenario: Scenario, artifact: Artifact, hostname: str) -> tuple[list[str], str]:
    """The argv that runs the image's ENTRYPOINT + CMD (or the scenario's command) as Docker
    would, with busybox at /.explorer/busybox: a clean environment, the image's user; and the
    working directory to run it in."""
    facts = artifact.facts
    user = resolve_user(str(facts.get("user") or "root"), _read(root, "etc/passwd"), _read(root, "etc/group"))
    env = guest_env(list(facts.get("env") or []), user.home, hostname)
    workdir = str(facts.get("workdir") or "/")
    argv = compose_argv(
        list(facts.get("entrypoint") or []), list(facts.get("command") or []), scenario.workload.command
    )
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    executable = find_executable(root, argv[0], path_env, workdir)
    return exec_argv(argv, executable, env, user), workdir


def _read(root: Path, relative: str) -> str:
    found = resolve_in_root(root, "/" + relative)
    return found.read_text(errors="replace") if found is not None and found.is_file() else ""
