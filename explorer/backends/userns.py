"""The userns side: the runc side's image, run by Podman in a user namespace of its own
(engines/podman.py), asked about itself with an exec through Podman's Docker-compatible API."""

from __future__ import annotations

from explorer.backends.base import Backend
from explorer.engines.podman import PodmanEngine
from explorer.guest.exec import DockerExec
from explorer.guest.handles import RunningContainer
from explorer.images.container.source import ContainerImage
from explorer.model import Side


def assemble(side: Side) -> Backend[RunningContainer]:
    return Backend(side, ContainerImage(), PodmanEngine(side), DockerExec("podman exec"))
