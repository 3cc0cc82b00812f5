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

from explorer.errors import BackendError
from explorer.guest import parse_view, view_script
from explorer.guest.handles import NspawnMachine
from explorer.model import GuestView, Target

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


def _kernel_boot_id(leader: int) -> str | None:
    done = subprocess.run(
        nsenter_argv(leader, list(KERNEL_BOOT_ID)), check=False, capture_output=True, text=True, timeout=60
    )
    text = done.stdout.strip()
    return text if done.returncode == 0 and len(text) == 36 else None
