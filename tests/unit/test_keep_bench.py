"""benchmarks/keep_result.py fails when keeping a result misses its target, and passes when not."""

from __future__ import annotations

import importlib.util

from tests.conftest import ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("keep_result", ROOT / "benchmarks" / "keep_result.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_keep_benchmark_fails_above_its_target_and_passes_below():
    bench = _bench()
    assert bench.verdict(0.004, target_s=0.003)[0] is False and "MISSED" in bench.verdict(0.004, target_s=0.003)[1]
    assert bench.verdict(0.004, target_s=0.100) == (True, "  keeping adds 4.0 ms median (target <= 100 ms): met")
