"""ruff over the project: the lint and format check that `make lint` runs, kept green by the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, skip_or_fail_in_ci


def _ruff() -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        skip_or_fail_in_ci("ruff is not installed (pip install -e '.[test]')")
    return ruff


def test_ruff_is_clean():
    result = subprocess.run(
        [_ruff(), "check", "explorer", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_formats_the_code():
    """The house style: ruff formats (line length 120, pyproject.toml)."""
    result = subprocess.run(
        [_ruff(), "format", "--check", "explorer", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _mypy() -> str:
    mypy = shutil.which("mypy") or str(Path(sys.executable).with_name("mypy"))
    if not Path(mypy).exists():
        skip_or_fail_in_ci("mypy is not installed (pip install -e '.[test]')")
    return mypy


def test_mypy_finds_no_error_in_explorer():
    """The type checker of `make lint`, at setup.cfg's [mypy] strictness."""
    result = subprocess.run([_mypy(), "explorer"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_document_and_its_readers_pass_mypy_strict():
    """The result document's models and every reader of it (the loader, claims, the output wing)
    pass mypy --strict itself, not only setup.cfg's per-module flags."""
    readers = ["explorer/result", "explorer/document.py", "explorer/claims", "explorer/output"]
    result = subprocess.run([_mypy(), "--strict", *readers], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_a_side_assembled_from_parts_that_do_not_fit(tmp_path):
    """A channel takes the handle type its engine's targets hold: Docker's engine with the
    guest agent's channel (which takes a RunningVM) is a type error, the runc side's parts are not."""
    parts = (
        "from explorer.backends.base import Backend\n"
        "from explorer.engines.docker import DockerEngine, Runc\n"
        "from explorer.guest.agent import AgentChannel\n"
        "from explorer.guest.exec import DockerExec\n"
        "from explorer.images.container.source import ContainerImage\n"
        "from explorer.sides import get\n\n"
        'side = get("runc")\n'
        "fits = Backend(side, ContainerImage(), DockerEngine(side, Runc()), DockerExec())\n"
    )
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(parts)
    bad.write_text(parts + "misfit = Backend(side, ContainerImage(), DockerEngine(side, Runc()), AgentChannel())\n")
    argv = [_mypy(), "--config-file", str(ROOT / "setup.cfg"), "--cache-dir", str(tmp_path / "cache")]
    assert subprocess.run([*argv, str(good)], cwd=ROOT, capture_output=True, text=True, check=False).returncode == 0
    found = subprocess.run([*argv, str(bad)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert found.returncode == 1 and "bad.py:10" in found.stdout, found.stdout
