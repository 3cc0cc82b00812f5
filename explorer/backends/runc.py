"""The runc side: the scenario's image, run by Docker with its default runtime, asked about
itself with `docker exec`."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.engines.docker import DockerEngine, Runc
from explorer.guest.exec import DockerExec
from explorer.guest.handles import RunningContainer
from explorer.images.container.source import ContainerImage
from explorer.model import Side


def assemble(side: Side) -> Backend[RunningContainer]:
    return Backend(side, ContainerImage(), DockerEngine(side, Runc()), DockerExec())
