"""The mongodb scenario where its image cannot be had: a clear error naming the image and the
ways out, exit 1, fast (no pull left hanging), and nothing left behind.

`registry.invalid` never resolves (RFC 2606), so the unpullable case is the same on every
machine; the bundled scenario itself is run as well when mongo:7.0 is not present locally.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from explorer.scenario import load
from tests.conftest import ROOT, containers_of, run_explorer

pytestmark = pytest.mark.docker

UNPULLABLE = "registry.invalid/explorer-test/mongo:7.0"


def docker_cli(*args: str) -> list[str]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout
    return out.split()


def image_present(ref: str) -> bool:
    return bool(docker_cli("images", "-q", ref))


def run_without_leftovers(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI with a private, empty TMPDIR; assert it is still empty afterwards."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    started = time.monotonic()
    result = run_explorer(*args, timeout=300, env={"TMPDIR": str(tmpdir)})
    elapsed = time.monotonic() - started
    assert list(tmpdir.iterdir()) == [], "the run left temporary files behind"
    return result, elapsed


def assert_clear_pull_error(stderr: str, ref: str) -> None:
    assert f"Error: image '{ref}' is not present and could not be pulled" in stderr
    assert "docker load -i" in stderr and f"docker save {ref}" in stderr
    assert "offline scenario (explorer run redis)" in stderr
    assert "Traceback" not in stderr


def test_unpullable_mongodb_image_fails_fast_and_leaves_nothing(docker_backend, tmp_path):
    data = yaml.safe_load((ROOT / "scenarios" / "mongodb.yaml").read_text())
    data["workload"]["image"] = UNPULLABLE
    path = tmp_path / "mongodb.yaml"
    path.write_text(yaml.safe_dump(data))
    result, elapsed = run_without_leftovers(
        tmp_path, "run", "--scenario-file", str(path), "--sides", "runc", "--no-load"
    )
    assert result.returncode == 1, result.stderr
    assert_clear_pull_error(result.stderr, UNPULLABLE)
    assert elapsed < 20, f"took {elapsed:.1f} s to fail"
    assert containers_of("mongodb") == []
    assert not image_present(UNPULLABLE)


def test_bundled_mongodb_scenario_without_its_image(docker_backend, tmp_path):
    image = load("mongodb").workload.image
    if image_present(image):
        pytest.skip(f"{image} is present here; the run is covered by the workflow's explorer run mongodb")
    result, elapsed = run_without_leftovers(
        tmp_path, "run", "mongodb", "--sides", "runc", "--repeat", "1", "--format", "json", "--load-seconds", "1"
    )
    try:
        if result.returncode == 0:  # a registry answered (a CI runner): then the run must be real
            visibility = json.loads(result.stdout)["sides"]["runc"]["visibility"]
            assert visibility["process_names"] == ["mongod"] and visibility["visible_on_host"]
            assert json.loads(result.stdout)["sides"]["runc"]["load"]["status"] == "ok"  # the pymongo loop
        else:
            assert result.returncode == 1, result.stderr
            assert_clear_pull_error(result.stderr, image)
            assert elapsed < 45, f"took {elapsed:.1f} s to fail"
        assert containers_of("mongodb") == []
    finally:
        if image_present(image):
            docker_cli("rmi", image)  # pulled by this test: leave the host as it was
