"""The container sides start from an image: built offline from the scenario's recipe
(mmdebstrap, then `docker import`), or an existing reference."""

from __future__ import annotations

import shutil

from docker.errors import APIError, ImageNotFound

from explorer.contracts import DoctorCheck, Progress, SourceDefaults
from explorer.dockerd import docker_client
from explorer.errors import ExplorerError
from explorer.images import sizes
from explorer.images.container.docker_image import ensure_image, image_argv
from explorer.model import LABEL_IMAGE, Artifact
from explorer.scenario import Scenario


def workload_argv(ref: str, progress: Progress | None = None) -> tuple[str, ...]:
    """What a container of image `ref` runs: its ENTRYPOINT + CMD (pulled if absent)."""
    return image_argv(docker_client(), ref, progress)


class ContainerImage(SourceDefaults):
    """The scenario's Docker image, as `docker image inspect` describes it."""

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        client = docker_client()
        artifact = ensure_image(client, scenario, progress)
        artifact.facts.update(sizes.container_sizes(client, client.images.get(artifact.ref)))
        return artifact

    def doctor_checks(self) -> list[DoctorCheck]:
        return [DoctorCheck("mmdebstrap", lambda: tool("mmdebstrap", "mmdebstrap"))]

    def remove_cached(self) -> list[str]:
        """Every image explorer built (their label says so)."""
        client, removed = docker_client(), []
        for image in client.images.list(filters={"label": LABEL_IMAGE}):
            assert image.id is not None  # a listed image has its Id
            try:
                client.images.remove(image.id, force=True)
                removed.append(f"image {', '.join(image.tags) or image.short_id}")
            except (ImageNotFound, APIError):
                continue
        return removed


def tool(name: str, package: str) -> str:
    """A build tool's path, for `explorer doctor`; ExplorerError with the package to install."""
    path = shutil.which(name)
    if path:
        return path
    raise ExplorerError(f"{name} not found", hint=f"apt-get install {package} (or scripts/setup-host)")
