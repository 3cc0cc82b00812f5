"""`explorer clean` finds what explorer labelled, and only that."""

from __future__ import annotations

import pytest

from explorer.dockerd import docker_client
from explorer.model import LABEL_MANAGED, LABEL_RUN
from tests.conftest import clean_is_safe, run_explorer

pytestmark = pytest.mark.docker


def test_clean_removes_labelled_containers_only(docker_backend, redis_artifact):
    client = docker_client()
    ours = client.containers.create(redis_artifact.ref, labels={LABEL_MANAGED: "true", LABEL_RUN: "leftover"})
    theirs = client.containers.create(redis_artifact.ref, labels={"someone.else": "1"})
    try:
        clean_is_safe(client)
        result = run_explorer("clean")
        assert result.returncode == 0, result.stderr
        assert f"container {ours.name}" in result.stdout
        names = {c.name for c in client.containers.list(all=True)}
        assert ours.name not in names and theirs.name in names
    finally:
        theirs.remove(force=True)
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_RUN}=leftover"}):
            c.remove(force=True)
