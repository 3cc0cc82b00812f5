"""Text of the files the full-OS image gets: the workload's systemd unit, the network
configuration, sudoers, the first-boot SSH host key unit.

Pure functions only (no I/O), so every quoting rule is unit-tested. A scenario's values
reach a unit file only through `exec_word`, `env_assignment` and `unit_value`, which escape
what systemd would otherwise interpret (quotes, backslashes, `%` specifiers, `$` variables)
and refuse what a unit file cannot carry (newlines and other control characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from explorer.errors import BuildError

WORKLOAD_UNIT = "explorer-workload.service"
HOSTKEYS_UNIT = "explorer-ssh-hostkeys.service"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"  # the virtio-serial port qemu-ga listens on
GUEST_NICS = ("eth0", "eth1")
_BARE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")  # words systemd takes literally, unquoted
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse_control(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise BuildError(
            f"{what} {value!r} contains a newline or another control character, which a systemd unit file cannot carry"
        )


def exec_word(word: str) -> str:
    """One argv word for ExecStart=: double-quoted unless plain, with `\\` and `"` escaped
    (C-style unescaping), `%` doubled (specifiers) and `$` doubled (variable expansion)."""
    _refuse_control(word, "the argument")
    escaped = word.replace("%", "%%").replace("$", "$$")
    if _BARE.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: list[str] | tuple[str, ...], executable: str | None = None) -> str:
    """An ExecStart= value. With `executable` (an absolute path) the `@` prefix keeps
    argv[0] as given, as Docker does (`@/usr/bin/redis-server redis-server ...`)."""
    if not argv:
        raise BuildError("the workload has no command")
    words = [exec_word(word) for word in argv]
    if executable is None:
        return " ".join(words)
    if not executable.startswith("/") or not _BARE.match(executable) or "%" in executable:
        raise BuildError(f"the workload's executable {executable!r} is not a plain absolute path")
    return " ".join(["@" + executable, *words])


def env_assignment(name: str, value: str) -> str:
    """One quoted `"NAME=value"` word for Environment= (specifiers expanded, `$` is not)."""
    if not _ENV_NAME.match(name):
        raise BuildError(f"{name!r} is not a valid environment variable name")
    _refuse_control(value, f"the value of {name}")
    text = f"{name}={value}".replace("%", "%%")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_value(value: str, what: str) -> str:
    """A single-valued setting (User=, WorkingDirectory=): `%` escaped, no quoting syntax."""
    _refuse_control(value, what)
    if value != value.strip() or not value:
        raise BuildError(f"{what} {value!r} is empty or has surrounding whitespace")
    return value.replace("%", "%%")


@dataclass(frozen=True)
class WorkloadService:
    """How explorer-workload.service runs the workload (what a container would run)."""

    argv: tuple[str, ...]
    executable: str | None = None  # resolved absolute path; None: systemd searches its PATH
    user: str = "root"
    group: str | None = None
    workdir: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    root_directory: str | None = None  # the image's own root filesystem, for image scenarios
    description: str = "the workload"
    extra: tuple[str, ...] = field(default=())  # fixed [Service] lines chosen by explorer


def workload_unit(service: WorkloadService) -> str:
    """The unit: one simple service, never restarted (a crash must show, not be hidden)."""
    lines = [
        "[Unit]",
        f"Description=explorer workload: {unit_value(service.description, 'the description')}",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_line(service.argv, service.executable)}",
        f"User={unit_value(service.user, 'the user')}",
    ]
    if service.group:
        lines.append(f"Group={unit_value(service.group, 'the group')}")
    lines.append(f"WorkingDirectory={unit_value(service.workdir, 'the working directory')}")
    if service.env:
        lines.append("Environment=" + " ".join(env_assignment(k, v) for k, v in service.env))
    if service.root_directory:
        lines += [f"RootDirectory={unit_value(service.root_directory, 'the root directory')}", "MountAPIVFS=yes"]
    lines += [*service.extra, "Restart=no", "", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def interfaces_text(nics: tuple[str, ...] = GUEST_NICS) -> str:
    """ifupdown: DHCP on every NIC the VM may have (a single user-mode NIC as eth0 for the
    fullvm side; Vagrant's dummy eth0 and the forwarded eth1 for the vagrant side)."""
    lines = ["# written by explorer", "auto lo", "iface lo inet loopback"]
    for nic in nics:
        lines += ["", f"allow-hotplug {nic}", f"iface {nic} inet dhcp"]
    return "\n".join(lines) + "\n"


SUDOERS = "# written by explorer: Vagrant's convention\nvagrant ALL=(ALL) NOPASSWD: ALL\n"

# Each VM made from the image gets its own host keys at first boot, rather than sharing
# keys baked at build time. ed25519 and ECDSA only: an RSA key takes seconds under TCG.
HOSTKEYS_SERVICE = """[Unit]
Description=explorer: generate this VM's own SSH host keys (the image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=ssh.service
"""
SSHD_HOSTKEYS = "# written by explorer\nHostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n"


def hosts_text(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
