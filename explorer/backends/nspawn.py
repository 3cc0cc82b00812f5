"""The system container side: the full-OS image's root filesystem without its kernel
(images/systemroot.py), booted by systemd-nspawn with its own systemd on the host's kernel
(engines/nspawn.py), asked about itself through nsenter (guest/nsenter.py). The workload is
the same systemd service as in the full-OS VM."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.engines.nspawn import NspawnEngine
from explorer.guest.handles import NspawnMachine
from explorer.guest.nsenter import NsenterView
from explorer.images.systemroot import SystemRootfs
from explorer.model import Side


def assemble(side: Side) -> Backend[NspawnMachine]:
    return Backend(side, SystemRootfs(), NspawnEngine(side), NsenterView())
