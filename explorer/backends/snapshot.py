"""The snapshot side: the microVM's same disk and kernel, booted once per run and saved; each
start is a restore of that memory snapshot (engines/snapshot.py). No kernel boots in a start;
the guest is asked about itself on the microVM's view port."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.backends.microvm import MICROVM
from explorer.engines.snapshot import SnapshotEngine
from explorer.guest.handles import RunningVM
from explorer.guest.viewport_channel import ViewPort
from explorer.images.microvm.source import MicroVMDisk
from explorer.model import Side


def assemble(side: Side) -> Backend[RunningVM]:
    return Backend(side, MicroVMDisk(), SnapshotEngine(side, MICROVM), ViewPort())
