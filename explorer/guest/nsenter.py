"""A system container's channel: the view script run by `nsenter` in the container's own
namespaces (PID, mount, UTS, IPC, network), entered through its PID 1 as the host sees it.

machinectl-free: no machined, no D-Bus (the host has no systemd as PID 1, and the container
is not registered). `systemd-run --machine` needs both, so it is not used here. The shell
nsenter starts is a child of a process outside the container's PID namespace (its parent
PID inside is 0); it is explorer's own and left out of the listing, as every view's is.

The view is of the booted container: the workload answers while its systemd is still starting
the other units (sshd among them, beside the workload), so the view first waits, bounded, for
`systemctl is-system-running --wait` inside (70-80 ms after readiness here).
"""

from __future__ import annotations

import contextlib
import subprocess
import time

from explorer.errors import BackendError
from explorer.guest import parse_view, view_script
from explorer.guest.handles import NspawnMachine
from explorer.model import GuestView, InsideDelivery, InsideOutput, InsideProgram, Target

CHANNEL = "nsenter into the container's PID and mount namespaces (/bin/sh)"
BOOT_WAIT_S = 10  # at most this long for the container's systemd to finish starting its units
NAMESPACES = ("--mount", "--uts", "--ipc", "--net", "--pid")
# systemd-nspawn bind-mounts a boot_id of its own making over /proc/sys/kernel/random/boot_id
# (each container "boots"); the kernel's own is read from a fresh procfs, mounted over /proc
# in a private mount namespace below the container's (nothing of it stays in the container).
KERNEL_BOOT_ID = (
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "/bin/sh",
    "-c",
    ("mount -t proc proc /proc && cat /proc/sys/kernel/random/boot_id"),
)


def nsenter_argv(leader: int, argv: list[str]) -> list[str]:
    return ["nsenter", f"--target={leader}", *NAMESPACES, "--", *argv]


class NsenterView:
    def inside(self, target: Target[NspawnMachine], program: InsideProgram) -> InsideDelivery:
        return inside_system_container(target, program)

    def view(self, target: Target[NspawnMachine]) -> GuestView:
        leader = target.held.leader
        if not leader:
            raise BackendError(f"the container {target.name} has no known PID 1 to enter")
        booting = ["timeout", str(BOOT_WAIT_S), "systemctl", "is-system-running", "--wait"]
        with contextlib.suppress(subprocess.TimeoutExpired):  # still booting: the view says what runs
            subprocess.run(nsenter_argv(leader, booting), check=False, capture_output=True, timeout=BOOT_WAIT_S + 5)
        try:
            done = subprocess.run(
                nsenter_argv(leader, ["/bin/sh", "-c", view_script()]),
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"nsenter into {target.name} did not finish in 60 s") from exc
        view = parse_view(done.stdout, channel=CHANNEL)
        if done.returncode != 0 or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {(done.stderr or done.stdout)[-300:]}")
        kernel_boot_id = _kernel_boot_id(leader)
        if kernel_boot_id and view.boot_id and kernel_boot_id != view.boot_id:
            view.channel = (
                f"{CHANNEL}; boot_id read from a fresh procfs inside: nspawn bind-mounts a boot_id of its own "
                f"({view.boot_id}) over /proc/sys/kernel/random/boot_id"
            )
            view.boot_id = kernel_boot_id
        return view


# The probe runs as a service of the container's own systemd: a oneshot unit written into the
# container's /run/systemd/system and started with systemctl over its private socket (no D-Bus: its
# `systemctl start` of a oneshot returns once the service has run). Forked by the container's PID 1,
# it carries what nspawn gave every process of the container (its seccomp filter, its capability
# bounding set), as the workload's own unit does; a process nsenter started would carry none of it.
DELIVER = 'cat > "$1" && chmod 0755 "$1"'
EXTRA_S = 30  # the service's start and stop, beyond the probe's own deadline
UNIT = """[Unit]
Description=explorer's inside probe ({label})
[Service]
Type=oneshot
{user}ExecStart={argv}
StandardOutput=file:{out}
StandardError=file:{err}
TimeoutStartSec={timeout}
"""


def _in(
    leader: int, argv: list[str], timeout_s: float = 60, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(nsenter_argv(leader, argv), input=stdin, capture_output=True, timeout=timeout_s, check=False)


def _ids_of(leader: int, pid: str) -> tuple[str, str] | None:
    """The effective uid and gid of process `pid` (as the container numbers it)."""
    done = _in(leader, ["/bin/cat", f"/proc/{pid}/status"])
    ids = {
        line.split(":")[0]: line.split()[2]
        for line in done.stdout.decode(errors="replace").splitlines()
        if line.startswith(("Uid:", "Gid:")) and len(line.split()) > 2
    }
    return (ids["Uid"], ids["Gid"]) if done.returncode == 0 and "Uid" in ids and "Gid" in ids else None


def inside_system_container(target: Target[NspawnMachine], program: InsideProgram) -> InsideDelivery:
    """The inside probe in a system container: written through the container's own mount
    namespace into its root (the overlay's upper layer), run by the container's systemd as a
    oneshot service (as the workload process's uid:gid, and as root), removed with its units."""
    leader = target.held.leader
    if not leader:
        raise BackendError(f"the container {target.name} has no known PID 1 to enter")
    path = f"/var/tmp/{program.name}"
    with open(program.binary, "rb") as binary:
        done = _in(leader, ["/bin/sh", "-c", DELIVER, "sh", path], stdin=binary.read())
    if done.returncode != 0:
        raise BackendError(f"the inside probe could not be written into {target.name}: {done.stderr[-300:]!r}")
    units = []
    for index, run in enumerate(program.runs):
        unit = f"{program.name.strip('.')}-{index}"
        args = list(run.args)
        user = ""
        if "--as-pid" in args:
            at = args.index("--as-pid")
            ids = _ids_of(leader, args[at + 1])
            if ids is not None:  # started as that user by systemd, as the workload's unit is
                user, args = f"User={ids[0]}\nGroup={ids[1]}\n", args[:at] + args[at + 2 :]
        text = UNIT.format(
            label=run.label,
            user=user,
            argv=" ".join([path, "--timeout", str(program.timeout_s), *args]),
            out=f"/run/{unit}.out",
            err=f"/run/{unit}.err",
            timeout=program.timeout_s + 5,
        )
        _in(leader, ["/bin/sh", "-c", 'cat > "$1"', "sh", f"/run/systemd/system/{unit}.service"], stdin=text.encode())
        units.append((run, unit))
    outputs: list[InsideOutput] = []
    removal = None
    try:
        _in(leader, ["systemctl", "daemon-reload"])
        for run, unit in units:
            started = time.monotonic()
            try:
                _in(leader, ["systemctl", "start", f"{unit}.service"], program.timeout_s + EXTRA_S)
            except subprocess.TimeoutExpired:
                outputs.append(InsideOutput(run.label, None, "", "", time.monotonic() - started))
                continue
            status = _in(leader, ["systemctl", "show", "-p", "ExecMainStatus", "--value", f"{unit}.service"])
            out = _in(leader, ["/bin/cat", f"/run/{unit}.out"]).stdout.decode(errors="replace")
            err = _in(leader, ["/bin/cat", f"/run/{unit}.err"]).stdout.decode(errors="replace")
            code = status.stdout.decode().strip()
            outputs.append(
                InsideOutput(run.label, int(code) if code.isdigit() else None, out, err, time.monotonic() - started)
            )
    finally:
        files = [path, *(f"/run/systemd/system/{u}.service" for _, u in units)]
        files += [f"/run/{u}.{kind}" for _, u in units for kind in ("out", "err")]
        gone = _in(leader, ["/bin/rm", "-f", *files])
        _in(leader, ["systemctl", "daemon-reload"])
        if gone.returncode != 0:
            removal = f"rm -f exited {gone.returncode}: {gone.stderr.decode(errors='replace').strip()[-200:]}"
    how = (
        f"written through the container's mount namespace into {path} (its overlay's upper layer), each run a "
        "oneshot service of the container's own systemd (systemctl over its private socket), as the workload "
        "process's uid:gid and as root: under nspawn's seccomp filter and capability bounding set, as the "
        "workload's own unit; removed after, with its units"
    )
    return InsideDelivery(how, outputs, removal)


def _kernel_boot_id(leader: int) -> str | None:
    done = subprocess.run(
        nsenter_argv(leader, list(KERNEL_BOOT_ID)), check=False, capture_output=True, text=True, timeout=60
    )
    text = done.stdout.strip()
    return text if done.returncode == 0 and len(text) == 36 else None
