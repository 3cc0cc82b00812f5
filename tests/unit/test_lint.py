"""ruff over the project: the lint that `make lint` runs, kept green by the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, skip_or_fail_in_ci


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        skip_or_fail_in_ci("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([ruff, "check", "explorer", "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
