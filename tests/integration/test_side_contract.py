"""One contract, every registered side (as pytest-testinfra runs one body against every
backend): a side that is added to explorer/sides.py is tested here without a new test.

Each side starts the redis scenario once, answers readiness, reports host processes only in
its own roles, says what its kernel is from inside, and leaves nothing after destroy (twice:
destroy is idempotent) and clean."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from explorer import lifecycle
from explorer.sides import SIDES
from tests.conftest import backend_or_skip, ps_e

MARKS = {"container": [pytest.mark.docker], "vm": [pytest.mark.libvirt, pytest.mark.slow]}


def marks(side) -> list:
    return MARKS[side.kind] + ([pytest.mark.vagrant] if side.backend.startswith("explorer.backends.vagrant") else [])


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(s), id=n) for n, s in SIDES.items()])
def test_side_contract(name, redis_scenario, redis_artifact):
    backend = backend_or_skip(name)
    assert backend.side is SIDES[name]
    artifact = backend.prepare(redis_scenario)
    run_id = lifecycle.new_run_id()
    t0 = time.monotonic()
    target = backend.create(redis_scenario, artifact, run_id, 0)
    try:
        assert target.side == name and name in target.name and target.run_id == run_id
        lifecycle.wait_until_ready(backend, redis_scenario, target, t0)  # as a run waits: the side's timeout
        runtime = backend.runtime_pids(target)
        assert runtime and set(runtime.values()) <= set(backend.side.roles)
        host_table = ps_e("comm")
        assert all(pid in host_table for pid in runtime)  # what it reports, ps -e lists
        workload = backend.host_pids(target)
        names = {host_table.get(pid) for pid in workload}
        if backend.side.kind == "vm":  # the VMM runs the guest: no process of the workload's below it
            descendants = [p.name() for pid in runtime for p in psutil.Process(pid).children(recursive=True)]
            assert workload == [] and "redis-server" not in descendants
        else:
            assert not workload or "redis-server" in names
        view = backend.guest_view(target)
        assert view.kernel_release and any(p.name == "redis-server" for p in view.processes)
        assert set(target.marks) <= set(backend.milestones) and backend.milestones[0] in target.marks
        assert isinstance(backend.logs(target), str)
    finally:
        backend.destroy(target)
        backend.destroy(target)  # idempotent
        backend.release(artifact)  # what prepare made for this run alone (the snapshot's saved state)
    assert backend.clean(run_id) == []  # destroy left nothing for the safety net
    assert not [p for p in artifact.paths.values() if "/tmp/" in p and Path(p).exists()]
