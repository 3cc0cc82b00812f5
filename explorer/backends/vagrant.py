"""The Vagrant side: the full-OS image as a box, brought up by `vagrant up` (vagrant-libvirt)
from the repository's Vagrantfile, asked about itself over `vagrant ssh`."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.backends.fullvm import MIN_MEMORY_MIB
from explorer.engines.vagrant import VagrantEngine
from explorer.guest.handles import VagrantMachine
from explorer.guest.ssh import VagrantSsh
from explorer.images.box import VagrantBox
from explorer.model import Side


def assemble(side: Side) -> Backend[VagrantMachine]:
    return Backend(side, VagrantBox(), VagrantEngine(side, MIN_MEMORY_MIB), VagrantSsh())
