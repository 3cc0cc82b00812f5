"""The microVM side: the container's own filesystem on a disk, booted by libvirt with a
kernel and explorer's init, which answers view requests on a virtio-serial port."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.engines.libvirt import LibvirtEngine, Machine
from explorer.guest import viewport
from explorer.guest.handles import RunningVM
from explorer.guest.viewport_channel import ViewPort
from explorer.images.microvm.source import MicroVMDisk
from explorer.model import Side

# Milestones from the console: the kernel's banner, then the guest init's marks. QEMU's
# hostfwd accepts and holds connections until the guest's network is up, so readiness is
# not tried before it (trying earlier only costs time).
MICROVM = Machine(
    milestones=("created", "process", "kernel", "init", "network", "ready"),
    console_milestones={"kernel": "kernel", "init": "init", "network": "network"},
    ready_after="network",
    view_port=viewport.PORT,
)


def assemble(side: Side) -> Backend[RunningVM]:
    return Backend(side, MicroVMDisk(), LibvirtEngine(side, MICROVM), ViewPort())
