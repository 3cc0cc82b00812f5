"""The container image: imported from the offline rootfs with the recipe's config, or an
existing image reference (local, or pulled where a registry is reachable)."""

from __future__ import annotations

import json
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound

from explorer.backends.base import LABEL_MANAGED, LABEL_RECIPE, LABEL_SCENARIO, Artifact
from explorer.build.rootfs import build_rootfs, rootfs_path
from explorer.errors import BuildError
from explorer.scenario import Recipe, Scenario


def image_tag(scenario: Scenario) -> str:
    assert scenario.workload.recipe is not None
    return f"explorer/{scenario.name}:{scenario.workload.recipe.content_hash()}"


def image_changes(recipe: Recipe, scenario_name: str) -> list[str]:
    """Dockerfile instructions that give the imported rootfs the recipe's runtime config."""
    changes = [f"CMD {json.dumps(list(recipe.command))}"]
    if recipe.entrypoint:
        changes.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
    changes += [f"ENV {key}={json.dumps(value)}" for key, value in recipe.env]
    changes += [f"USER {recipe.user}", f"WORKDIR {recipe.workdir}"]
    labels = {LABEL_MANAGED: "true", LABEL_SCENARIO: scenario_name, LABEL_RECIPE: recipe.content_hash()}
    changes.append("LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()))
    return changes


def image_facts(image: Any) -> dict[str, Any]:
    config = image.attrs.get("Config") or {}
    return {
        "image_id": image.id,
        "tags": image.tags,
        "image_bytes": image.attrs.get("Size"),
        "layers": len((image.attrs.get("RootFS") or {}).get("Layers") or []),
        "entrypoint": config.get("Entrypoint") or [],
        "command": config.get("Cmd") or [],
        "user": config.get("User") or "root",
        "workdir": config.get("WorkingDir") or "/",
        "env": config.get("Env") or [],
        "labels": config.get("Labels") or {},
    }


def ensure_image(client: docker.DockerClient, scenario: Scenario, progress: Any = None) -> Artifact:
    """Return the scenario's image, building (recipe) or pulling (reference) it if absent."""
    recipe = scenario.workload.recipe
    if recipe is None:
        return _existing_or_pulled(client, scenario.workload.image or "")
    tag = image_tag(scenario)
    paths = {"rootfs_tar": str(rootfs_path(recipe))}
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        image = None
    if image is not None and rootfs_path(recipe).exists():
        return Artifact(ref=tag, facts={**image_facts(image), "built": False}, paths=paths)
    if progress:
        progress(f"building {scenario.name} rootfs with mmdebstrap ({recipe.suite}: {', '.join(recipe.packages)})")
    tar = build_rootfs(recipe, scenario.timeouts.build_s)
    if image is None:
        if progress:
            progress(f"importing {tar.name} into Docker as {tag}")
        repository, _, version = tag.partition(":")
        try:
            client.api.import_image_from_file(
                str(tar), repository=repository, tag=version, changes=image_changes(recipe, scenario.name)
            )
            image = client.images.get(tag)
        except DockerException as exc:
            raise BuildError(f"Docker could not import {tar}: {exc}") from exc
    return Artifact(ref=tag, facts={**image_facts(image), "built": True}, paths=paths)


def _existing_or_pulled(client: docker.DockerClient, ref: str) -> Artifact:
    try:
        image = client.images.get(ref)
    except ImageNotFound:
        try:
            image = client.images.pull(ref)
        except (APIError, DockerException) as exc:
            raise BuildError(
                f"image {ref!r} is not present and could not be pulled: {_short(exc)}",
                hint=f"on a machine that has it: docker save {ref} -o image.tar, here: docker load -i image.tar; "
                "or run an offline scenario (explorer run redis)",
            ) from exc
    return Artifact(ref=ref, facts={**image_facts(image), "built": False})


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return text.splitlines()[0][:300]
