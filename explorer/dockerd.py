"""The Docker daemon as this process reaches it: one client, shared by every part that needs
one (the container image, the Docker engine, the microVM's disk build, the native reference),
and the hint that starts the daemon when none answers."""

from __future__ import annotations

import functools

import docker
from docker.errors import DockerException

from explorer.errors import BackendUnavailable

START_HINT = "run scripts/setup-host (it installs and starts containerd and dockerd)"


@functools.cache
def _connected() -> docker.DockerClient:
    client = docker.from_env(timeout=120)
    client.ping()
    return client


def docker_client() -> docker.DockerClient:
    """The process's Docker client; BackendUnavailable (with how to start it) if none answers."""
    try:
        return _connected()
    except DockerException as exc:
        raise BackendUnavailable(f"unable to contact the Docker daemon: {exc}", hint=START_HINT) from exc
