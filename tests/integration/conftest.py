"""The guard every integration module runs under: what the host holds of containers, domains,
nspawn machines, mounts, loop devices, network namespaces, veths, CNI reservations and conmon
processes is read before the module and after it; anything new after it fails the module.

And the one CLI run of the three VM sides that two modules read (each full-OS boot takes ~30-70 s
under TCG): test_fullos_sides.py checks the full-OS sides against `ps -e` polled throughout,
test_tcp_readiness.py each VM's timeline under `ready: tcp`."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import (
    ROOT,
    Explorer,
    backend_or_skip,
    host_leftovers,
    in_a_container,
    new_leftovers,
    ps_e,
)


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = host_leftovers()
    yield
    left = new_leftovers(before)
    assert not left, "left on the host by this module: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in left.items())


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def networks() -> list[str]:
    return virsh("net-list", "--all", "--name").split()


def vagrant_machines() -> list[str]:
    out = subprocess.run(
        ["vagrant", "global-status", "--prune"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return [line for line in out.splitlines() if re.match(r"^[0-9a-f]{7} ", line)]


@pytest.fixture(scope="session")
def vm_run(redis_artifact, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`explorer run --scenario-file redis-tcp.yaml --sides microvm,fullvm,vagrant --repeat 1
    --strict --no-load`: the redis scenario with the weakest readiness, `tcp` (which a proxy in
    front of a VM could fool), every other part of it as it is; `ps -e` polled throughout (its
    commands, redis-server in a container of another test set aside), the host's libvirt networks
    and Vagrant machines read before it."""
    for side in ("microvm", "fullvm", "vagrant"):
        backend_or_skip(side)
    data = yaml.safe_load((ROOT / "scenarios" / "redis.yaml").read_text())
    data["name"], data["workload"]["ready"] = "redis-tcp", "tcp"
    scenario = tmp_path_factory.mktemp("vm-run") / "redis-tcp.yaml"
    scenario.write_text(yaml.safe_dump(data))
    nets_before, machines_before = networks(), vagrant_machines()
    args = ("--sides", "microvm,fullvm,vagrant", "--repeat", "1", "--format", "json", "--strict", "--no-load")
    proc = Explorer("run", "--scenario-file", str(scenario), *args)
    comms: set[str] = set()
    deadline = time.monotonic() + 1200
    while proc.poll() is None and time.monotonic() < deadline:
        table = ps_e("comm")
        comms |= {comm for pid, comm in table.items() if comm != "redis-server" or not in_a_container(pid)}
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return {"doc": json.loads(out), "comms": comms, "nets": nets_before, "machines": machines_before}
