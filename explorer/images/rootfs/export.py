"""A root filesystem unpacked on the host: from a tarball, or exported from any image Docker
can run (a created, never started container, streamed into tar). The microVM's disk and the
native reference both start from one; owners, modes and capabilities are kept, so it needs root."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException

from explorer.errors import BuildError
from explorer.model import LABEL_MANAGED, LABEL_OWNER
from explorer.tools import run_tool as _run

MIB = 1024 * 1024

TAR_EXTRACT = ["tar", "--numeric-owner", "--same-permissions", "--same-owner", "--xattrs", "--xattrs-include=*", "-x"]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise BuildError(
            "building a VM disk needs root (to keep the image's file owners)",
            hint="run explorer as root (or through sudo)",
        )


def unpack_tar(root: Path, tar: Path) -> None:
    """Unpack as root, keeping numeric owners, modes, device nodes and capabilities."""
    _require_root()
    _run(TAR_EXTRACT + ["-f", str(tar), "-C", str(root)], f"unpacking {tar.name}")


def export_image(client: docker.DockerClient, ref: str, root: Path) -> None:
    """Any image Docker can run, pulled ones included: stream the filesystem of a created
    (never started) container straight into tar."""
    _require_root()
    container = None
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(TAR_EXTRACT + ["-f", "-", "-C", str(root)], stdin=subprocess.PIPE, stderr=errors)
        try:
            container = client.containers.create(
                ref,
                entrypoint=["/explorer-export-only"],
                network_disabled=True,
                name=f"explorer-export-{uuid.uuid4().hex[:12]}",
                labels={LABEL_MANAGED: "true", LABEL_OWNER: str(os.getpid())},
            )
            _feed(tar, container.export(chunk_size=MIB))
        except DockerException as exc:
            raise BuildError(f"Docker could not export the filesystem of {ref}: {exc}") from exc
        finally:
            _stop(tar)
            if container is not None:
                _remove(container)
        if tar.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-10:]
            raise BuildError(f"unpacking the export of {ref} failed (tar exited {tar.returncode}):\n" + "\n".join(tail))


def _feed(tar: subprocess.Popen[bytes], chunks: Any) -> None:
    """Write the export into tar's stdin; if tar stops early, its exit code tells why."""
    assert tar.stdin is not None
    try:
        for chunk in chunks:
            tar.stdin.write(chunk)
        tar.stdin.close()
    except BrokenPipeError:
        pass
    tar.wait()


def _stop(tar: subprocess.Popen[bytes]) -> None:
    if tar.poll() is None:
        tar.kill()
    try:
        if tar.stdin is not None:
            tar.stdin.close()
    except OSError:
        pass
    tar.wait()


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except DockerException:
        pass  # labelled: `explorer clean` finds it
