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
