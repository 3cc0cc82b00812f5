"""The isolation spectrum as data: one entry per side a user can measure.

An entry is a Side (explorer/model.py): its name, kind, title, host-process roles, timeout,
colour, and the function that assembles its backend from parts (what it starts from, the
engine that runs it, the channel into it), named by an import string and loaded lazily
(explorer/backends/__init__.py: backend_for).
Adding a side is its backend file(s) and one entry here. Every result document records each
side's name, kind, title, roles and colour, so that claims and the output wing read only the
document, never this registry; nothing else asks a side's name what to do.
"""

from __future__ import annotations

from explorer.errors import UsageError
from explorer.model import KINDS, Side

__all__ = ["KINDS", "SIDES", "Side", "get", "of_kind", "parse"]
GUEST_KERNEL = "the guest's own kernel"  # what answers a VM's workload's system calls

SIDES: dict[str, Side] = {
    side.name: side
    for side in (
        Side(
            "runc",
            "container",
            "runc container",
            "explorer.backends.runc:assemble",
            roles=("shim",),
            color="#1f77b4",
            density_count=50,
            about="Docker's default runtime: namespaces and cgroups on the host's kernel",
        ),
        Side(
            "gvisor",
            "container",
            "gVisor container",
            "explorer.backends.gvisor:assemble",
            roles=("sandbox", "gofer", "stub", "shim"),
            kernel_roles=("sandbox", "gofer", "stub"),  # the workload's own calls stop at the Sentry
            answers="gVisor's Sentry",
            color="#2ca02c",
            package="runsc",
            density_count=20,
            about="Docker with runsc: the same image on gVisor's own kernel (the Sentry), in user space",
        ),
        Side(
            "userns",
            "container",
            "user-namespaced container",
            "explorer.backends.userns:assemble",
            roles=("conmon",),
            color="#17becf",
            density_count=50,
            about="the runc side's image run by Podman with --userns=auto: root inside is not the host's root",
        ),
        Side(
            "nspawn",
            "container",
            "system container",
            "explorer.backends.nspawn:assemble",
            roles=("nspawn",),
            color="#bcbd22",
            max_repeats=3,
            package="systemd-container",
            density_count=10,
            about="systemd-nspawn booting the full-OS image's root (no kernel) with its own systemd, on the host's kernel",
        ),
        Side(
            "microvm",
            "vm",
            "microVM",
            "explorer.backends.microvm:assemble",
            roles=("VMM",),
            kernel_roles=("VMM",),
            answers=GUEST_KERNEL,
            timeout="vm_ready_s",
            color="#d62728",
            density_count=6,
            about="libvirt/QEMU booting the container's own root filesystem with a kernel and explorer's init",
        ),
        Side(
            "fullvm",
            "vm",
            "full-OS VM",
            "explorer.backends.fullvm:assemble",
            roles=("VMM",),
            kernel_roles=("VMM",),
            answers=GUEST_KERNEL,
            timeout="vm_ready_s",
            color="#9467bd",
            max_repeats=2,
            density_count=3,
            about="libvirt/QEMU booting Debian with systemd, sshd and the guest agent; the workload a service",
        ),
        Side(
            "vagrant",
            "vm",
            "Vagrant VM",
            "explorer.backends.vagrant:assemble",
            roles=("VMM",),
            kernel_roles=("VMM",),
            answers=GUEST_KERNEL,
            timeout="vm_ready_s",
            color="#8c564b",
            max_repeats=1,
            package="vagrant-libvirt",
            density_count=2,
            about="the same full-OS VM brought up by `vagrant up` (vagrant-libvirt) from the repo's Vagrantfile",
        ),
        Side(
            "snapshot",
            "vm",
            "restored microVM",
            "explorer.backends.snapshot:assemble",
            roles=("VMM",),
            kernel_roles=("VMM",),
            answers=GUEST_KERNEL,
            timeout="vm_ready_s",
            color="#ff7f0e",
            density_count=1,
            about="the microVM booted once and saved; each start restores that memory snapshot (no kernel boots)",
        ),
    )
}


def get(name: str) -> Side:
    try:
        return SIDES[name]
    except KeyError:
        raise UsageError(f"unknown side {name!r}", hint=f"known sides: {', '.join(SIDES)}") from None


def of_kind(kind: str) -> tuple[str, ...]:
    return tuple(name for name, side in SIDES.items() if side.kind == kind)


def parse(text: str | None) -> tuple[str, ...] | None:
    """--sides a,b,c as a tuple of side names (None: none named)."""
    if not text:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError("--sides names no side", hint=f"known sides: {', '.join(SIDES)}")
    for name in names:
        get(name)
    return names
