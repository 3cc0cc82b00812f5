"""The isolation spectrum as data: one entry per side a user can measure.

A side is a name, a kind (`container` or `vm`: what the document's claims speak of), a title
for tables, the roles of the host processes it creates, the scenario timeout that bounds its
readiness, a colour for plots, and the backend that runs it (an import string, loaded lazily
so that libvirt is only imported when a VM side is used). Adding a side is one backend file
and one entry here; every result document records each side's name, kind, title, roles and
colour, so that report, compare, plot and claims read only the document, never this registry.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from explorer.errors import UsageError

if TYPE_CHECKING:
    from explorer.backends.base import Backend

KINDS = ("container", "vm")


@dataclass(frozen=True)
class Side:
    name: str
    kind: str
    title: str
    backend: str  # "module:Class"
    roles: tuple[str, ...]  # roles of the host processes that run the workload, e.g. shim, VMM
    about: str  # one line: what this side is, for `explorer list --sides` and the README
    timeout: str = "ready_s"  # which of the scenario's timeouts bounds its readiness
    color: str = "gray"
    max_repeats: int | None = None  # a slow side may default to fewer starts than the scenario's
    package: str | None = None  # the distribution package it needs beyond the common set
    density_count: int = 10  # `explorer density`'s default instance count (the memory guard may stop sooner)
    options: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """What a result document records about the side."""
        out = asdict(self)
        out["roles"] = list(self.roles)
        for key in ("backend", "options", "max_repeats", "timeout", "package", "density_count"):
            out.pop(key)
        return out


SIDES: dict[str, Side] = {
    side.name: side
    for side in (
        Side("runc", "container", "runc container", "explorer.backends.docker:DockerBackend",
             roles=("shim",), color="#1f77b4", density_count=50,
             about="Docker's default runtime: namespaces and cgroups on the host's kernel"),
        Side("gvisor", "container", "gVisor container", "explorer.backends.gvisor:GVisorBackend",
             roles=("sandbox", "gofer", "stub", "shim"), color="#2ca02c", package="runsc", density_count=20,
             about="Docker with runsc: the same image on gVisor's own kernel (the Sentry), in user space"),
        Side("microvm", "vm", "microVM", "explorer.backends.libvirt:LibvirtBackend",
             roles=("VMM",), timeout="vm_ready_s", color="#d62728", density_count=6,
             about="libvirt/QEMU booting the container's own root filesystem with a kernel and explorer's init"),
        Side("fullvm", "vm", "full-OS VM", "explorer.backends.fullvm:FullVMBackend",
             roles=("VMM",), timeout="vm_ready_s", color="#9467bd", max_repeats=2, density_count=3,
             about="libvirt/QEMU booting Debian with systemd, sshd and the guest agent; the workload a service"),
        Side("vagrant", "vm", "Vagrant VM", "explorer.backends.vagrant:VagrantBackend",
             roles=("VMM",), timeout="vm_ready_s", color="#8c564b", max_repeats=1, package="vagrant-libvirt",
             density_count=2,
             about="the same full-OS VM brought up by `vagrant up` (vagrant-libvirt) from the repo's Vagrantfile"),
    )
}


def get(name: str) -> Side:
    try:
        return SIDES[name]
    except KeyError:
        raise UsageError(f"unknown side {name!r}", hint=f"known sides: {', '.join(SIDES)}") from None


def of_kind(kind: str) -> tuple[str, ...]:
    return tuple(name for name, side in SIDES.items() if side.kind == kind)


def backend_for(name: str) -> Backend:
    """The side's backend, constructed with its registry entry."""
    side = get(name)
    module_name, class_name = side.backend.split(":")
    return getattr(importlib.import_module(module_name), class_name)(side)


def parse(text: str | None, kind: str | None = None) -> tuple[str, ...] | None:
    """--sides a,b,c and --only KIND as a tuple of side names (None: every side that can run)."""
    if text and kind:
        raise UsageError("give --sides or --only, not both")
    if kind:
        return of_kind(kind)
    if not text:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError("--sides names no side", hint=f"known sides: {', '.join(SIDES)}")
    for name in names:
        get(name)
    return names
