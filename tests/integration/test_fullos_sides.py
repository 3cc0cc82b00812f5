"""The full-OS VM sides (fullvm under libvirt, the same VM through Vagrant) against
independent tools: `ps -e` polled while they run, `virsh dominfo`, `vagrant ssh`, `virsh
net-list`, `vagrant global-status`. Each boot takes ~30-70 s under TCG: one CLI run of both
sides, and one machine per side started through its backend, for the whole module."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from explorer import lifecycle
from explorer.load import client_for, rounds
from explorer.load.phase import LoadPhase
from tests.conftest import Explorer, backend_or_skip, ps_e, run_explorer_traced

pytestmark = [pytest.mark.libvirt, pytest.mark.vagrant, pytest.mark.slow]
HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


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


@pytest.fixture(scope="module")
def cli_run(redis_artifact):
    """`explorer run redis --sides fullvm,vagrant --repeat 1`, with `ps -e` polled throughout."""
    backend_or_skip("fullvm")
    backend_or_skip("vagrant")
    nets_before, machines_before = networks(), vagrant_machines()
    proc = Explorer("run", "redis", "--sides", "fullvm,vagrant", "--repeat", "1", "--format", "json", "--no-load")
    comms: set[str] = set()
    while proc.poll() is None:
        table = ps_e("comm")
        comms |= {comm for pid, comm in table.items() if comm != "redis-server" or not _in_a_container(pid)}
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return {"doc": json.loads(out), "comms": comms, "nets": nets_before, "machines": machines_before}


def _in_a_container(pid: int) -> bool:
    """A redis-server under a containerd shim is some container's (another test on a shared
    machine), not this VM's; in CI nothing else runs meanwhile."""
    try:
        return any(p.name().startswith("containerd-shim") for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def test_the_host_never_lists_the_workload_only_the_vmm(cli_run):
    assert "redis-server" not in cli_run["comms"]
    assert any(comm.startswith("qemu-system-x86") for comm in cli_run["comms"])  # comm: 15 characters
    for name in ("fullvm", "vagrant"):
        side = cli_run["doc"]["sides"][name]
        assert side["kind"] == "vm"
        assert side["visibility"]["visible_on_host"] is False
        assert [p["name"] for p in side["visibility"]["runtime_processes"]] == ["qemu-system-x86_64"]
        assert side["kernel"]["shared"] is False and side["kernel"]["guest_boot_id"] != HOST_BOOT_ID


def test_the_guest_runs_a_full_os(cli_run):
    for name in ("fullvm", "vagrant"):
        inside = cli_run["doc"]["sides"][name]["visibility"]["inside"]
        processes = {p["pid"]: p["name"] for p in inside["processes"]}
        assert processes.get(1) == "systemd", processes
        user = {p["name"] for p in inside["processes"] if not p["kernel_thread"]}
        assert {"systemd-journal", "sshd", "redis-server"} <= user, user
        assert inside["os_process_count"] >= 5 and inside["kernel_thread_count"] >= 20


def test_explorers_own_ssh_session_is_set_apart_from_the_os_processes(cli_run):
    """`vagrant ssh` takes the Vagrant side's view: its sshd session processes (and any other
    session still closing) are explorer's or Vagrant's,
    reported apart; the listening sshd (PID 1's child) stays among the guest OS's."""
    inside = cli_run["doc"]["sides"]["vagrant"]["visibility"]["inside"]
    listed = {p["pid"]: p for p in inside["processes"]}
    mine = inside["explorer_processes_inside"]
    assert len(mine) >= 2 and set(mine) == {"sshd"}, mine  # the viewing session: [priv] and user
    assert not set(inside["explorer_pids_inside"]) & set(listed)
    sshd = [p for p in listed.values() if p["name"] == "sshd"]
    assert [p["ppid"] for p in sshd] == [1], sshd  # the listener only
    assert {"name": "sshd", "count": 1} in inside["os_processes"]


def test_claims_per_vm_side_name_the_os_processes_and_the_larger_image(cli_run):
    claims = {c["id"]: c for c in cli_run["doc"]["claims"]}
    fullvm = claims["os-processes"]["sides"]["fullvm"]
    assert fullvm["verdict"] == "reproduced" and "systemd" in fullvm["evidence"]
    image = cli_run["doc"]["sides"]["fullvm"]["image"]
    assert image["total_bytes"] == image["vm_image_bytes"] > 200 * 2**20
    startup = cli_run["doc"]["sides"]["fullvm"]["startup"]["summary"]
    assert {"kernel_s", "agent_s", "ssh_s", "ready_s"} <= set(startup)
    analyze = cli_run["doc"]["sides"]["fullvm"]["target"]["systemd_analyze"]
    assert analyze["available"] and analyze["userspace_s"] > 0


def test_nothing_is_left_and_no_network_was_made(cli_run):
    assert networks() == cli_run["nets"]
    assert vagrant_machines() == cli_run["machines"]
    run_id = cli_run["doc"]["run_id"]
    assert run_id not in virsh("list", "--all", "--name")
    assert not [p for p in Path("/tmp").glob(f"explorer-vagrant-{run_id}-*")]


@contextlib.contextmanager
def ready_target(side: str, scenario):
    """One instance of `side`, waited for as a run waits, destroyed afterwards: (backend, target)."""
    backend = backend_or_skip(side)
    artifact = backend.prepare(scenario)
    t0 = time.monotonic()
    target = backend.create(scenario, artifact, lifecycle.new_run_id(), 0)
    try:
        lifecycle.wait_until_ready(backend, scenario, target, t0)
        yield backend, target
    finally:
        backend.destroy(target)


@pytest.fixture(scope="module")
def fullvm_target(redis_scenario):
    with ready_target("fullvm", redis_scenario) as started:
        yield started


def test_virsh_dominfo_matches_the_configured_memory(fullvm_target, redis_scenario):
    _backend, target = fullvm_target
    info = dict(line.split(":", 1) for line in virsh("dominfo", target.name).splitlines() if ":" in line)
    assert int(info["Max memory"].split()[0]) == target.facts["memory_mib"] * 1024 >= 1024 * 1024
    assert int(info["CPU(s)"]) == redis_scenario.vm.vcpus


def test_the_client_runs_inside_the_guest_through_its_agent_against_the_guests_loopback(fullvm_target, redis_scenario):
    """Path (c): redis-benchmark from the guest's own image, run by the guest agent against the
    guest's 127.0.0.1: measured like any path, its argv kept, no client process on the host."""
    backend, target = fullvm_target
    paths = backend.load_paths(target)
    inside = next(p for p in paths if p.inside)
    assert [p.name for p in paths] == ["QEMU user-mode networking (hostfwd)", "inside the guest (guest agent)"]
    settings = rounds.Settings(seconds=1, rounds=1, trace=False)
    endpoint = LoadPhase(settings).endpoint(backend, target, inside, None)  # the accelerator only says KVM roles
    got = rounds.measure_paths(client_for(redis_scenario.load), [(inside, endpoint)], settings)
    assert got["status"] == "ok", got.get("reason")
    assert got["summary"]["ops_s"]["median"] > 0 and got["rounds"][0]["client_cpu_s"] is None
    argv = got["argv"]["round"]
    assert argv[: len(inside.prefix)] == list(inside.prefix) and argv[len(inside.prefix)] == "redis-benchmark"
    assert argv[argv.index("-h") + 1] == "127.0.0.1" and argv[argv.index("-p") + 1] == "6379"


def test_vagrant_ssh_reads_another_boot_id(redis_scenario):
    with ready_target("vagrant", redis_scenario) as (_backend, target):
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
        assert not [pid for pid, comm in ps_e("comm").items() if comm == "redis-server" and not _in_a_container(pid)]
    assert target.name not in virsh("list", "--all", "--name")


def test_a_vagrant_readiness_timeout_exits_4_with_the_readiness_message():
    """The Vagrant side composes the full-OS parts: its readiness timeout is the usual one (exit
    4, what was waited for), not a traceback from a part it does not have."""
    backend_or_skip("vagrant")
    proc, pid = run_explorer_traced("run", "redis", "--sides", "vagrant", "--repeat", "1", "--ready-timeout", "5")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr
    assert "did not answer a redis readiness check" in proc.stderr
    assert not [n for n in virsh("list", "--all", "--name").split() if f"-{pid}-" in n]
    assert not [p for p in Path("/tmp").glob("explorer-vagrant-*") if p.name.split("-")[4] == str(pid)]


def test_the_inside_probe_runs_through_the_guest_agent_and_the_guests_kernel_answers(cli_run):
    """Issue 31 on the full-OS sides: the probe uploaded by the guest agent (virsh's
    guest-file-write, never a host mount), run as the workload's user and as root inside; the
    guest's kernel answers, the guest's MemTotal is at most the configured memory."""
    for name in ("fullvm", "vagrant"):
        side = cli_run["doc"]["sides"][name]
        inside = side["inside"]
        assert inside["available"], f"{name}: {inside['reason']}"
        assert "guest agent" in inside["delivery"], inside["delivery"]
        assert inside["summary"]["answered_by"] == "the guest's own kernel" and not inside["summary"]["host_kernel"]
        assert inside["summary"]["same_boot_id"] is False and inside["summary"]["operations"] >= 25
        users = [run["view"]["user"] for run in inside["runs"]]
        assert users[0]["uid"] != 0 and users[1]["uid"] == 0, users  # redis's own user, then root
        configured = side["memory"]["configured_bytes"]
        for run in inside["runs"]:
            assert 0 < run["view"]["facts"]["mem_total_bytes"]["value"] <= configured
    verdicts = {
        n: j["verdict"] for n, j in next(c for c in cli_run["doc"]["claims"] if c["id"] == "isolation")["sides"].items()
    }
    assert verdicts == {"fullvm": "reproduced", "vagrant": "reproduced"}
