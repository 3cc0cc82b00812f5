"""The runc side: the scenario's image, run by Docker with its default runtime, asked about
itself with `docker exec`."""

from __future__ import annotations

from docker.models.containers import Container

from explorer.backends.base import Backend
from explorer.engines.docker import DockerEngine, Runc
from explorer.guest.exec import DockerExec
from explorer.images.container.source import ContainerImage
from explorer.model import Side


def assemble(side: Side) -> Backend[Container]:
    return Backend(side, ContainerImage(), DockerEngine(side, Runc()), DockerExec())
