"""One contract, every registered side (as pytest-testinfra runs one body against every
backend): a side that is added to explorer/sides.py is tested here without a new test.

Each side starts the redis scenario once, answers readiness, reports host processes only in
its own roles, says what its kernel is from inside, and leaves nothing after destroy (twice:
destroy is idempotent) and clean. While a full-OS side is up, the tools of its own engine check
it too (`virsh dominfo`, `vagrant ssh`) and the full-OS VM's client runs inside it: each boot
takes ~30-70 s under TCG, so these share the contract's boot rather than boot again."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from explorer import lifecycle
from explorer.load import client_for, rounds
from explorer.load.phase import LoadPhase
from explorer.sides import SIDES
from tests.conftest import backend_or_skip, in_a_container, ps_e
from tests.integration.conftest import virsh

HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()

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
        WHILE_UP.get(name, lambda *_: None)(backend, target, redis_scenario)
    finally:
        backend.destroy(target)
        backend.destroy(target)  # idempotent
        backend.release(artifact)  # what prepare made for this run alone (the snapshot's saved state)
    assert backend.clean(run_id) == []  # destroy left nothing for the safety net
    assert not [p for p in artifact.paths.values() if "/tmp/" in p and Path(p).exists()]


def fullvm_up(backend, target, scenario) -> None:
    """`virsh dominfo` gives the configured memory and vCPUs; path (c): redis-benchmark from the
    guest's own image, run by the guest agent against the guest's 127.0.0.1, measured like any
    path, its argv kept, no client process on the host."""
    info = dict(line.split(":", 1) for line in virsh("dominfo", target.name).splitlines() if ":" in line)
    assert int(info["Max memory"].split()[0]) == target.facts["memory_mib"] * 1024 >= 1024 * 1024
    assert int(info["CPU(s)"]) == scenario.vm.vcpus
    paths = backend.load_paths(target)
    inside = next(p for p in paths if p.inside)
    assert [p.name for p in paths] == ["QEMU user-mode networking (hostfwd)", "inside the guest (guest agent)"]
    settings = rounds.Settings(seconds=1, rounds=1, trace=False)
    endpoint = LoadPhase(settings).endpoint(backend, target, inside, None)  # the accelerator only says KVM roles
    got = rounds.measure_paths(client_for(scenario.load), [(inside, endpoint)], settings)
    assert got["status"] == "ok", got.get("reason")
    assert got["summary"]["ops_s"]["median"] > 0 and got["rounds"][0]["client_cpu_s"] is None
    argv = got["argv"]["round"]
    assert argv[: len(inside.prefix)] == list(inside.prefix) and argv[len(inside.prefix)] == "redis-benchmark"
    assert argv[argv.index("-h") + 1] == "127.0.0.1" and argv[argv.index("-p") + 1] == "6379"


def vagrant_up(backend, target, scenario) -> None:
    """`vagrant ssh` reads another boot_id than the host's, and no redis-server runs on the host
    outside a container."""
    out = subprocess.run(
        ["vagrant", "ssh", "--no-tty", "-c", "cat /proc/sys/kernel/random/boot_id"],
        cwd=target.handle.workdir,
        env={**os.environ, **target.handle.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", out) and out != HOST_BOOT_ID
    assert not [pid for pid, comm in ps_e("comm").items() if comm == "redis-server" and not in_a_container(pid)]


WHILE_UP: dict[str, Callable[[Any, Any, Any], None]] = {"fullvm": fullvm_up, "vagrant": vagrant_up}
