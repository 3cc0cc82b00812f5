"""`explorer run --image` on both sides for an image whose ENTRYPOINT is a script that takes
the CMD as its arguments, as official images do (`docker-entrypoint.sh redis-server ...`).

The script writes a marker that the workload cannot answer without: a config file binding
redis to every address. A PONG through Docker's proxy or QEMU's hostfwd therefore proves the
script ran and exec'd the CMD with its arguments, in the container and in the VM alike.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest

from explorer.dockerd import docker_client
from explorer.model import LABEL_IMAGE
from tests.conftest import docker_image_inspect, run_explorer

pytestmark = [pytest.mark.libvirt, pytest.mark.docker, pytest.mark.slow]

MARKER = "/tmp/explorer-entrypoint.conf"
ENTRYPOINT_SCRIPT = f"""#!/bin/sh
set -e
echo "bind 0.0.0.0" > {MARKER}
exec "$@"
"""
DOCKERFILE = """FROM {base}
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server", "{marker}", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
LABEL {label}="true"
"""


def build_context(base: str) -> io.BytesIO:
    """A tar build context made in memory: the Dockerfile and the executable script."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text, mode in (
            ("Dockerfile", DOCKERFILE.format(base=base, marker=MARKER, label=LABEL_IMAGE), 0o644),
            ("docker-entrypoint.sh", ENTRYPOINT_SCRIPT, 0o755),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="module")
def entrypoint_image(docker_backend, redis_artifact):
    """FROM the offline redis image, no network needed; removed afterwards."""
    client = docker_client()
    tag = f"explorer/entrypoint-test:{uuid.uuid4().hex[:8]}"
    image, _ = client.images.build(fileobj=build_context(redis_artifact.ref), custom_context=True, tag=tag, rm=True)
    try:
        yield tag
    finally:
        client.images.remove(image.id, force=True)
        remove_vm_disks_of(image.id)


def remove_vm_disks_of(image_id: str) -> None:
    """The VM disk cached for the test image would outlive it: remove it too."""
    from explorer.cache import cache_dir

    for meta in cache_dir("vm").glob("*.json"):
        try:
            built_from = json.loads(meta.read_text()).get("image_id")
        except (OSError, ValueError):
            continue
        if built_from == image_id:
            meta.with_suffix(".qcow2").unlink(missing_ok=True)
            meta.unlink(missing_ok=True)


def test_entrypoint_script_runs_the_cmd_on_both_sides(libvirt_backend, entrypoint_image):
    """Needs the VM side's image builder to follow Docker's ENTRYPOINT + CMD rule."""
    inspected = docker_image_inspect(entrypoint_image)
    assert inspected["Config"]["Entrypoint"] == ["docker-entrypoint.sh"]
    assert inspected["Config"]["Cmd"][:2] == ["redis-server", MARKER]

    result = run_explorer(
        "run",
        "--image",
        entrypoint_image,
        "--port",
        "6379",
        "--ready",
        "redis",
        "--sides",
        "runc,microvm",
        "--repeat",
        "1",
        "--format",
        "json",
        "--no-load",
        "--no-load",
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["scenario"]["processes"] == ["redis-server"]  # read past the script
    container, vm = document["sides"]["runc"], document["sides"]["microvm"]
    # Ready means a PING answered +PONG: possible only with the script's bind config.
    assert container["startup"]["summary"]["ready_s"]["n"] == 1
    assert vm["startup"]["summary"]["ready_s"]["n"] == 1
    assert container["visibility"]["visible_on_host"] is True
    inside = vm["visibility"]["inside"]
    assert inside["available"], inside
    names = [p["name"] for p in inside["processes"]]
    assert "redis-server" in names
    assert not any(name.startswith("docker-entrypoi") for name in names)  # exec'd, not forked
    assert vm["visibility"]["visible_on_host"] is False  # the host sees only the VMM
