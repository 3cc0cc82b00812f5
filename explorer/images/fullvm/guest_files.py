"""Python writing into the full-OS root filesystem after mmdebstrap: the vagrant user's key
and sudo rule, networking, the hostname, masks, explorer's units, the scenario's files.

No shell is involved: a scenario's values are written as file content, never as commands,
and every guest path is resolved inside the root (symlinks followed inside it, `..`
refused), so no file lands outside the image.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from explorer.errors import BuildError
from explorer.images.fullvm import systemd_unit as units
from explorer.images.rootfs.dpkg_db import package_files
from explorer.images.rootfs.guest_config import resolve_in_root

# Vagrant's well-known insecure public key (public by design; Debian's vagrant package ships
# it as keys/vagrant.pub in the vagrant gem). Boxes carry it so `vagrant ssh` works at once.
VAGRANT_PUBLIC_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFH"
    "zD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8H"
    "fdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnD"
    "kbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ=="
    " vagrant insecure public key\n"
)
# What only slows a headless boot (MACHINE_NOTES: e2scrub_reap ~10 s under TCG; getty-static
# starts gettys on tty2-6 because the `important` variant has no logind).
SLOW_UNITS = ("e2scrub_reap.service", "getty-static.service")
UNIT_DIRS = ("/lib/systemd/system/", "/usr/lib/systemd/system/")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path")
SYSTEM = "etc/systemd/system"


def guest_dir(root: Path, guest_path: str) -> Path:
    """The host path of directory `guest_path` inside `root`, created if missing; symlinks
    are resolved inside the root, and `..`, relative paths and NUL are refused."""
    parts = guest_path.split("/")
    if not guest_path.startswith("/") or "\0" in guest_path or ".." in parts:
        raise BuildError(f"{guest_path!r} is not an absolute path inside the image")
    current = root
    for part in [p for p in parts if p not in ("", ".")]:
        guest = "/" + str((current / part).relative_to(root))
        resolved = resolve_in_root(root, guest)
        if resolved is None and (current / part).is_symlink():
            raise BuildError(f"{guest_path!r}: {guest} is a dangling symbolic link in the image")
        if resolved is None:
            (current / part).mkdir(mode=0o755)
            resolved = current / part
        if not resolved.is_dir():
            raise BuildError(f"{guest_path!r}: {guest} is not a directory in the image")
        current = resolved
    if not Path(os.path.realpath(current)).is_relative_to(os.path.realpath(root)):
        raise BuildError(f"{guest_path!r} leads outside the image")
    return current


def guest_target(root: Path, guest_path: str) -> Path:
    """The host path for file `guest_path` inside `root`, its directory created."""
    directory, _, name = guest_path.rpartition("/")
    if not guest_path.startswith("/") or "\0" in guest_path or name in ("", ".", ".."):
        raise BuildError(f"{guest_path!r} is not a file path inside the image")
    return guest_dir(root, directory or "/") / name


def write_file(root: Path, guest_path: str, text: str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    """Write a regular file (a symlink in its place is replaced, never followed)."""
    target = guest_target(root, guest_path)
    if target.is_symlink() or target.exists() and not target.is_file():
        if target.is_dir() and not target.is_symlink():
            raise BuildError(f"{guest_path!r} is a directory in the image")
        target.unlink()
    target.write_text(text)
    os.chown(target, *owner)
    target.chmod(mode)


def write_scenario_file(root: Path, guest_path: str, text: str) -> None:
    """A recipe's `files:` entry: an existing file keeps its owner and mode (as the package
    set them: pg_hba.conf stays readable by postgres), a new one is root's, 0644."""
    target = guest_target(root, guest_path)
    if target.is_file() and not target.is_symlink():
        info = target.stat()
        write_file(root, guest_path, text, info.st_mode & 0o7777, (info.st_uid, info.st_gid))
    else:
        write_file(root, guest_path, text)


def passwd_entry(root: Path, name: str) -> tuple[int, int, str]:
    """(uid, gid, home) of `name` in the image's /etc/passwd."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == name:
            return int(fields[2]), int(fields[3]), fields[5]
    raise BuildError(f"user {name!r} is missing from the image's /etc/passwd")


def ensure_ids(root: Path, uid: int, gid: int, home: str) -> None:
    """Give an image's numeric user and group an entry in the guest OS's passwd and group
    where they have none: systemd resolves User= through the guest's NSS, even with
    RootDirectory=, and fails a numeric id it cannot find (status 217/USER)."""
    tables = (
        ("etc/passwd", uid, f"explorer-uid-{uid}:x:{uid}:{gid}::{home}:/usr/sbin/nologin"),
        ("etc/group", gid, f"explorer-gid-{gid}:x:{gid}:"),
    )
    for relative, number, entry in tables:
        path = root / relative
        text = path.read_text()
        if not any(line.split(":")[2:3] == [str(number)] for line in text.splitlines()):
            path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + entry + "\n")


def install_vagrant_user(root: Path) -> None:
    """The vagrant user (made by useradd in a fixed mmdebstrap hook): its key, passwordless
    sudo, and a password field of `*` (no password login, but not a locked account)."""
    uid, gid, home = passwd_entry(root, "vagrant")
    write_file(root, f"{home}/.ssh/authorized_keys", VAGRANT_PUBLIC_KEY, 0o600, (uid, gid))
    ssh_dir = guest_target(root, f"{home}/.ssh/authorized_keys").parent
    os.chown(ssh_dir, uid, gid)
    ssh_dir.chmod(0o700)
    write_file(root, "/etc/sudoers.d/vagrant", units.SUDOERS, 0o440)
    shadow = root / "etc/shadow"
    lines = [
        ":".join([f[0], "*", *f[2:]]) if f[0] == "vagrant" else line
        for line, f in ((line, line.split(":")) for line in shadow.read_text().splitlines())
    ]
    shadow.write_text("\n".join(lines) + "\n")


def install_system(root: Path, hostname: str) -> None:
    """Networking, hostname, first-boot SSH host keys instead of the build's shared ones."""
    write_file(root, "/etc/network/interfaces", units.interfaces_text())
    write_file(root, "/etc/hostname", hostname + "\n")
    write_file(root, "/etc/hosts", units.hosts_text(hostname))
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_file(root, "/etc/ssh/sshd_config.d/explorer-hostkeys.conf", units.SSHD_HOSTKEYS)
    install_unit(root, units.HOSTKEYS_UNIT, units.HOSTKEYS_SERVICE, "ssh.service")


def install_unit(root: Path, name: str, text: str, wanted_by: str) -> None:
    """Write /etc/systemd/system/NAME and enable it the way `systemctl enable` would."""
    write_file(root, f"/{SYSTEM}/{name}", text)
    link = guest_target(root, f"/{SYSTEM}/{wanted_by}.wants/{name}")
    link.unlink(missing_ok=True)
    link.symlink_to(f"/{SYSTEM}/{name}")


def package_units(root: Path, packages: list[str]) -> list[str]:
    """Units (services, sockets, timers, paths, templates too) that `packages` ship."""
    found = set()
    for package in packages:
        for path in package_files(root, package):
            if posixpath.dirname(path) + "/" in UNIT_DIRS and path.endswith(UNIT_SUFFIXES):
                found.add(posixpath.basename(path))
    return sorted(found)


def mask_units(root: Path, names: list[str] | tuple[str, ...]) -> None:
    """Mask `names` (a link to /dev/null) and drop every enablement or alias link to them,
    so the package's own server never starts beside explorer-workload."""
    system = root / SYSTEM
    for directory, _, files in os.walk(system):
        for entry in files:
            path = Path(directory, entry)
            if path.is_symlink() and posixpath.basename(os.readlink(path)) in names:
                path.unlink()
    for name in names:
        target = system / name
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to("/dev/null")
