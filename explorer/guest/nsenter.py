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


# The probe runs as a transient service of the container's own systemd (systemd-run over its private
# bus, /run/systemd/private, no D-Bus needed): forked by the container's PID 1, it carries what
# nspawn gave every process of the container (its seccomp filter, its capability bounding set), as
# the workload's unit does. A process nsenter starts would carry none of it.
SYSTEMD_RUN = ("systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec")
DELIVER = 'cat > "$1" && chmod 0755 "$1"'
EXTRA_S = 30  # systemd-run's own start and stop, beyond the probe's deadline


def inside_system_container(target: Target[NspawnMachine], program: InsideProgram) -> InsideDelivery:
    """The inside probe in a system container: written through the container's own mount
    namespace into its root (the overlay's upper layer), run by the container's systemd, removed."""
    leader = target.held.leader
    if not leader:
        raise BackendError(f"the container {target.name} has no known PID 1 to enter")
    path = f"/var/tmp/{program.name}"
    with open(program.binary, "rb") as binary:
        done = subprocess.run(
            ["nsenter", f"--target={leader}", "--mount", "--", "/bin/sh", "-c", DELIVER, "sh", path],
            stdin=binary,
            capture_output=True,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        raise BackendError(f"the inside probe could not be written into {target.name}: {done.stderr[-300:]!r}")
    outputs: list[InsideOutput] = []
    removal = None
    try:
        for run in program.runs:
            argv = [*SYSTEMD_RUN, "--", path, "--timeout", str(program.timeout_s), *run.args]
            started = time.monotonic()
            try:
                ran = subprocess.run(
                    nsenter_argv(leader, argv),
                    capture_output=True,
                    text=True,
                    timeout=program.timeout_s + EXTRA_S,
                    check=False,
                )
                outputs.append(
                    InsideOutput(run.label, ran.returncode, ran.stdout, ran.stderr, time.monotonic() - started)
                )
            except subprocess.TimeoutExpired:
                outputs.append(InsideOutput(run.label, None, "", "", time.monotonic() - started))
    finally:
        gone = subprocess.run(
            nsenter_argv(leader, ["/bin/rm", "-f", path]), capture_output=True, text=True, timeout=60, check=False
        )
        if gone.returncode != 0:
            removal = f"rm -f {path} exited {gone.returncode}: {gone.stderr.strip()[-200:]}"
    how = (
        f"written through the container's mount namespace into {path} (its overlay's upper layer), run as a "
        "transient service of the container's own systemd (systemd-run), so under nspawn's seccomp filter and "
        "capability bounding set like the workload's unit; removed after"
    )
    return InsideDelivery(how, outputs, removal)


def _kernel_boot_id(leader: int) -> str | None:
    done = subprocess.run(
        nsenter_argv(leader, list(KERNEL_BOOT_ID)), check=False, capture_output=True, text=True, timeout=60
    )
    text = done.stdout.strip()
    return text if done.returncode == 0 and len(text) == 36 else None
