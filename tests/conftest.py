"""Shared fixtures: one built image per session, daemons checked once, skips that say why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def explorer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "explorer.cli", *args]


def run_explorer(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, in a child process."""
    return subprocess.run(
        explorer_argv(*args), check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def explorer_containers(client, label: str = "io.explorer.managed") -> list[str]:
    """Names of the containers carrying `label`, listed without inspecting each one (a
    container that its run removes meanwhile would make docker-py's list() fail)."""
    return sorted(c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters={"label": label}))


def backend_or_skip(side: str):
    """A checked backend; a missing daemon skips with its reason, except in CI, where it fails."""
    from explorer.backends import get_backend
    from explorer.errors import BackendUnavailable

    backend = get_backend(side)
    try:
        backend.check()
    except BackendUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the {side} backend must be available in CI: {exc}")
        pytest.skip(f"the {side} backend is not available: {exc}")
    return backend


@pytest.fixture(scope="session")
def docker_backend():
    return backend_or_skip("container")


@pytest.fixture(scope="session")
def libvirt_backend():
    return backend_or_skip("vm")


@pytest.fixture(scope="session")
def redis_scenario():
    from explorer import scenario

    return scenario.load("redis")


@pytest.fixture(scope="session")
def redis_artifact(docker_backend, redis_scenario):
    """The offline redis image, built once (cached by content hash across sessions too)."""
    return docker_backend.prepare(redis_scenario)
