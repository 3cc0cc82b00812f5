"""Image sizes like for like, against independent tools: a container image's content is
`docker image inspect`'s Size and its stored figure is what `docker save | gzip -c` gives (less
the tar's own metadata); a VM disk's content is what `dumpe2fs -h` finds in use on the disk
converted back to raw by `qemu-img convert`, plus its kernel and initramfs files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import backend_or_skip, docker_image_inspect

pytestmark = pytest.mark.slow


def gzip_of_docker_save(ref: str) -> int:
    """`docker save REF | gzip -c | wc -c`, as three processes, no shell."""
    save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
    gzip = subprocess.Popen(["gzip", "-c"], stdin=save.stdout, stdout=subprocess.PIPE)
    save.stdout.close()
    count = 0
    while chunk := gzip.stdout.read(1 << 20):
        count += len(chunk)
    assert gzip.wait(timeout=300) == 0 and save.wait(timeout=300) == 0
    return count


def held(path: Path) -> int:
    """What `du -B1` and `stat -c %s` say of a file: the smaller, its bytes less a sparse file's holes."""
    du = int(subprocess.run(["du", "-B1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])
    size = int(subprocess.run(["stat", "-L", "-c", "%s", str(path)], capture_output=True, text=True, check=True).stdout)
    return min(du, size)


def dumpe2fs_in_use(qcow2: Path, tmp_path: Path) -> int:
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True, timeout=300)
    out = subprocess.run(["dumpe2fs", "-h", str(raw)], capture_output=True, text=True, check=True).stdout
    field = {k: int(v) for k, v in re.findall(r"^(Block count|Free blocks|Block size):\s+(\d+)$", out, re.MULTILINE)}
    raw.unlink()
    return (field["Block count"] - field["Free blocks"]) * field["Block size"]


@pytest.mark.docker
def test_a_container_image_content_and_stored_against_docker(docker_backend, redis_artifact):
    facts = redis_artifact.facts
    assert facts["content_bytes"] == docker_image_inspect(redis_artifact.ref)["Size"]
    whole = gzip_of_docker_save(redis_artifact.ref)
    metadata = whole - facts["stored_bytes"]  # the save tar's own headers, manifest and repositories
    print(
        f"docker save | gzip -c: {whole} bytes; explorer's stored {facts['stored_bytes']}; the tar's own "
        f"metadata (headers, manifest, repositories, compressed) {metadata} bytes"
    )
    assert abs(metadata) <= 0.02 * whole
    assert facts["stored_bytes"] < facts["content_bytes"]  # compressed


@pytest.mark.libvirt
def test_the_microvm_disk_content_against_dumpe2fs(libvirt_backend, redis_scenario, tmp_path):
    artifact = libvirt_backend.prepare(redis_scenario)
    paths = {key: Path(value) for key, value in artifact.paths.items()}
    files = sum(held(paths[k]) for k in ("kernel", "initramfs"))  # the vmlinux is sparse: what it holds
    by_hand = dumpe2fs_in_use(paths["disk"], tmp_path) + files
    assert abs(artifact.facts["content_bytes"] - by_hand) <= 0.02 * by_hand
    assert artifact.facts["stored_parts"]["qcow2"] == held(paths["disk"])


@pytest.mark.libvirt
def test_the_full_os_disk_content_against_dumpe2fs_and_the_ratio_by_hand(redis_scenario, redis_artifact, tmp_path):
    """Claim 3 compares content with content: the full-OS VM's (ext4 in use + kernel + initrd)
    over the container image's Size, computed by hand here, is the ratio its evidence states."""
    backend = backend_or_skip("fullvm")
    artifact = backend.prepare(redis_scenario)
    paths = {key: Path(value) for key, value in artifact.paths.items()}
    by_hand = dumpe2fs_in_use(paths["disk"], tmp_path) + sum(paths[k].stat().st_size for k in ("kernel", "initramfs"))
    assert abs(artifact.facts["content_bytes"] - by_hand) <= 0.02 * by_hand
    assert "zlib-compressed" in artifact.facts["stored_method"]
    assert artifact.facts["stored_bytes"] < artifact.facts["content_bytes"]  # the qcow2 is compressed
    size = docker_image_inspect(redis_artifact.ref)["Size"]
    ratio = artifact.facts["content_bytes"] / redis_artifact.facts["content_bytes"]
    assert abs(ratio - by_hand / size) <= 0.05 * (by_hand / size)
