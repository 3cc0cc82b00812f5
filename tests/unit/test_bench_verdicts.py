"""Every benchmark can fail: each one's verdict function, given a target below the measured
figure, says MISSED and fails; given one above it, passes. The benchmarks themselves need the
engines for minutes and are not run here; their main() returns 1 when a verdict failed."""

from __future__ import annotations

import ast
import importlib.util
import sys
from types import ModuleType

import pytest

from tests.conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
# each benchmark, a figure as it measures it, and a target below and above that figure
CASES = {
    "container_startup": (1.07, 1.05, 1.10),  # explorer / floor, at most the target
    "userns_startup": (1.07, 1.05, 1.10),  # explorer / podman run by hand, at most the target
    "vm_startup": (1.07, 1.05, 1.10),
    "nspawn_startup": (1.07, 1.05, 1.10),  # explorer / systemd-nspawn -b by hand, at most the target
    "run_overhead": (0.062, 0.05, 0.10),  # explorer's own share of the wall time
    "load_overhead": (0.93, 0.05, 0.10),  # explorer / by hand, within the target either way
    "keep_result": (0.004, 0.003, 0.100),  # seconds keeping a result adds, at most the target
    "parse_result": (0.040, 0.030, 0.150),  # seconds reading a kept result back, at most the target
    "page_render": (1.9, 1.5, 3.0),  # seconds to render a six-side page in a fresh process
    "inside_probe": (0.62, 0.5, 1.0),  # seconds the inside step adds to a side, at most the target
}


def _load(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # as when run as a script: a benchmark's helpers sit beside it
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass in the file looks its module up there
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_is_covered():
    """Every file with a main() is a benchmark (bare_qemu.py is a helper of vm_startup.py)."""
    assert {path.stem for path in BENCHMARKS.glob("*.py") if "\ndef main(" in path.read_text()} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_missed_target_fails_and_a_met_one_passes(name):
    verdict = _load(name).verdict
    measured, below, above = CASES[name]
    passed, text = verdict(measured, below)
    assert passed is False and "MISSED" in text
    passed, text = verdict(measured, above)
    assert passed is True and "MISSED" not in text


def test_load_overhead_misses_on_either_side():
    """Reading faster than the hand-run client is as far off as reading slower."""
    verdict = _load("load_overhead").verdict
    assert verdict(1.07, 0.05)[0] is False and verdict(0.93, 0.05)[0] is False
    assert verdict(1.03, 0.05)[0] is True


def test_vm_startup_reports_without_a_target_and_judges_seconds():
    verdict = _load("vm_startup").verdict
    assert verdict(1.30, None) == (True, "1.30x")
    assert verdict(13.2, 12.0, " s") == (False, "13.20 s (target <= 12.00 s: MISSED)")


@pytest.mark.parametrize("name", sorted(CASES))
def test_main_returns_a_status_that_depends_on_a_verdict(name):
    """main() returns a status it computes, not a constant: its exit status can say a target was missed."""
    tree = ast.parse((BENCHMARKS / f"{name}.py").read_text())
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    returns = [n.value for n in ast.walk(main) if isinstance(n, ast.Return) and n.value is not None]
    assert any(not isinstance(value, ast.Constant) for value in returns)
