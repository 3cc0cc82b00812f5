"""The container image: imported from the offline rootfs with the recipe's config, or an
existing image reference (local, or pulled where a registry is reachable)."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils import parse_repository_tag

from explorer.errors import BuildError
from explorer.images.container.rootfs import build_rootfs, rootfs_path
from explorer.model import LABEL_IMAGE, LABEL_RECIPE, LABEL_SCENARIO, Artifact
from explorer.scenario import Recipe, Scenario


def image_tag(scenario: Scenario) -> str:
    """Keyed by the recipe and the image config explorer gives it, so a change to either rebuilds."""
    recipe = scenario.workload.recipe
    assert recipe is not None
    config = json.dumps(image_changes(recipe, scenario.name)).encode()
    return f"explorer/{scenario.name}:{hashlib.sha256(config).hexdigest()[:16]}"


def image_changes(recipe: Recipe, scenario_name: str) -> list[str]:
    """Dockerfile instructions that give the imported rootfs the recipe's runtime config."""
    changes = [f"CMD {json.dumps(list(recipe.command))}"]
    if recipe.entrypoint:
        changes.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
    changes += [f"ENV {key}={json.dumps(value)}" for key, value in recipe.env]
    changes += [f"USER {recipe.user}", f"WORKDIR {recipe.workdir}"]
    labels = {LABEL_IMAGE: "true", LABEL_SCENARIO: scenario_name, LABEL_RECIPE: recipe.content_hash()}
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
        return _existing_or_pulled(client, scenario.workload.image or "", progress)
    tag = image_tag(scenario)
    paths = {"rootfs_tar": str(rootfs_path(recipe))}
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        image = None
    if image is not None and rootfs_path(recipe).exists():
        return _artifact(tag, image, False, paths)
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
    return _artifact(tag, image, True, paths)


def image_argv(client: docker.DockerClient, ref: str, progress: Any = None) -> tuple[str, ...]:
    """What a container of `ref` runs: its ENTRYPOINT + CMD (the image is pulled if absent)."""
    facts = _existing_or_pulled(client, ref, progress).facts
    return tuple(facts["entrypoint"]) + tuple(facts["command"])


# A pull that sends nothing for this long is stuck (a registry that drops packets): a live
# pull reports progress every second or so. The SDK's pull has no timeout of its own.
PULL_STALL_S = 30.0


def _existing_or_pulled(client: docker.DockerClient, ref: str, progress: Any = None) -> Artifact:
    try:
        image = client.images.get(ref)
    except ImageNotFound:
        if progress:
            progress(f"pulling {ref} (not present locally)")
        try:
            _pull(client, ref, PULL_STALL_S)
            image = client.images.get(ref)
        except (APIError, DockerException, BuildError) as exc:
            raise BuildError(
                f"image {ref!r} is not present and could not be pulled: {_short(exc)}",
                hint=f"on a machine that has it: docker save {ref} -o image.tar, here: docker load -i image.tar; "
                "or run an offline scenario (explorer run redis)",
            ) from exc
    return _artifact(ref, image, False, {})


def _pull(client: docker.DockerClient, ref: str, stall_s: float = PULL_STALL_S) -> None:
    """Pull `ref`; give up once dockerd has said nothing for `stall_s` seconds."""
    repository, tag = parse_repository_tag(ref)
    messages: queue.Queue[Any] = queue.Queue()

    def consume() -> None:
        try:
            for message in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                messages.put(message)
            messages.put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread, raised there
            messages.put(exc)

    threading.Thread(target=consume, name=f"pull {ref}", daemon=True).start()
    while True:
        try:
            item = messages.get(timeout=stall_s)
        except queue.Empty:
            raise BuildError(f"the pull made no progress for {stall_s:g} s (registry unreachable?)") from None
        if item is None:
            return
        if isinstance(item, Exception):
            raise item
        if "error" in item:
            raise BuildError(str(item["error"]))


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return text.splitlines()[0][:300]


def _artifact(ref: str, image: Any, built: bool, paths: dict[str, str]) -> Artifact:
    facts = {**image_facts(image), "built": built}
    return Artifact(ref=ref, facts=facts, paths=paths, image_id=facts["image_id"], labels=dict(facts["labels"]))
