"""`explorer build` makes both images; qemu-img and docker confirm what it says it made."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import docker_image_inspect, run_explorer

pytestmark = pytest.mark.docker


def test_build_reports_the_container_image_and_the_vm_disk(docker_backend):
    result = run_explorer("build", "redis", timeout=900)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runc: ")
    tag = lines[0].split()[1]
    assert tag.startswith("explorer/redis:")
    assert next(line for line in lines if line.startswith("gvisor: ")).split()[1] == tag  # the same image
    disk = next(line for line in lines if line.startswith("microvm: ")).split()[1]
    assert docker_image_inspect(tag)["Config"]["Labels"]["io.explorer.image"] == "true"
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", disk], capture_output=True, text=True, check=True).stdout
    )
    assert info["format"] == "qcow2" and info["virtual-size"] > info["actual-size"] > 0
    again = run_explorer("build", "redis", timeout=120)  # the second build does no work
    side_lines = [line for line in again.stdout.splitlines() if not line.startswith(" ")]
    assert again.returncode == 0 and len(side_lines) >= 3, again.stdout
    assert all("(cached" in line or "skipped" in line for line in side_lines), again.stdout
