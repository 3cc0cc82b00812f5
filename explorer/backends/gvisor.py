"""The gVisor side: the same image, run by Docker with gVisor's runsc (engines/runsc.py)."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.engines.docker import DockerEngine
from explorer.engines.runsc import Runsc
from explorer.guest.exec import DockerExec
from explorer.guest.handles import RunningContainer
from explorer.images.container.source import ContainerImage
from explorer.model import Side


def assemble(side: Side) -> Backend[RunningContainer]:
    return Backend(side, ContainerImage(), DockerEngine(side, Runsc()), DockerExec())
