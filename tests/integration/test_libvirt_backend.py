"""The VM side against the real libvirtd (TCG here), checked with independent tools: virsh,
ps, ss, the host's boot_id; and after every way a start can end, nothing may be left."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from explorer import lifecycle, readiness
from explorer.errors import (
    BackendError,
    BackendUnavailable,
    BuildError,
    NotReady,
    UsageError,
)
from explorer.scenario import Timeouts, VMSpec
from tests.conftest import ROOT, Explorer, ps_e, qemu_processes

pytestmark = [pytest.mark.libvirt, pytest.mark.docker, pytest.mark.slow]  # the VM disk is made from the Docker image

HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def assert_nothing_left(run_id: str) -> None:
    """No domain, no QEMU, no work dir (overlay and console live in it) of this run."""
    domains = virsh("list", "--all", "--name").split()
    assert not [d for d in domains if f"-{run_id}-" in d], domains
    leftover = qemu_processes(f"-{run_id}-")
    assert not leftover, leftover
    assert not list(Path(tempfile.gettempdir()).glob(f"explorer-vm-{run_id}-*"))


@pytest.fixture(scope="module")
def vm_artifact(libvirt_backend, docker_backend, redis_scenario):
    """The VM disk, made from the Docker image: without Docker this skips (fails in CI) there."""
    return libvirt_backend.prepare(redis_scenario)


@pytest.fixture(scope="module")
def running_vm(libvirt_backend, redis_scenario, vm_artifact):
    run_id = lifecycle.new_run_id()
    target = libvirt_backend.create(redis_scenario, vm_artifact, run_id, 0)
    try:
        readiness.wait_ready(
            "redis", "127.0.0.1", target.host_port, time.monotonic() + 120, between=lambda: libvirt_backend.poll(target)
        )
        yield target
    finally:
        libvirt_backend.destroy(target)
        libvirt_backend.clean(run_id)
    assert_nothing_left(run_id)


def test_virsh_dominfo_matches_the_config_while_it_runs(running_vm, redis_scenario):
    info = dict(line.split(":", 1) for line in virsh("dominfo", running_vm.name).splitlines() if ":" in line)
    info = {key.strip(): value.strip() for key, value in info.items()}
    assert info["State"] == "running"
    assert info["Max memory"] == f"{redis_scenario.vm.memory_mib * 1024} KiB"
    assert info["CPU(s)"] == str(redis_scenario.vm.vcpus)
    assert info["Persistent"] == "no"  # transient: gone from libvirt once destroyed
    xml = virsh("dumpxml", running_vm.name)
    assert "<domain type='qemu'" in xml  # TCG: KVM hangs guests on this machine
    assert f'run="{running_vm.run_id}"' in xml or f"run='{running_vm.run_id}'" in xml


def test_host_sees_qemu_and_no_redis_server_of_the_vm(libvirt_backend, running_vm):
    table = ps_e("args")
    (qemu_pid,) = libvirt_backend.runtime_pids(running_vm)
    assert "qemu-system-x86_64" in table[qemu_pid] and f"guest={running_vm.name}," in table[qemu_pid]
    assert libvirt_backend.host_pids(running_vm) == []
    # Any redis-server on this host belongs to a container (a shim is its ancestor), none to the VM.
    rows = {
        pid: (int(ppid), comm)
        for pid, (ppid, comm) in ((pid, value.split(None, 1)) for pid, value in ps_e("ppid,comm").items())
    }
    for pid, (_, name) in rows.items():
        if name == "redis-server":
            chain, parent = [], rows[pid][0]
            while parent in rows and parent > 1:
                chain.append(rows[parent][1])
                parent = rows[parent][0]
            assert qemu_pid not in chain and any(n.startswith("containerd-shim") for n in chain), chain


def test_guest_has_its_own_kernel_and_boot_id(libvirt_backend, running_vm, vm_artifact):
    view = libvirt_backend.guest_view(running_vm)
    assert view.channel == "virtio-serial port explorer.view"  # asked for, not read off the console
    assert view.boot_id and view.boot_id != HOST_BOOT_ID.read_text().strip()
    assert view.kernel_release == vm_artifact.facts["kernel_version"]
    assert "redis-server" in {p.name for p in view.processes if not p.kernel_thread}


def test_port_is_forwarded_from_loopback_only(libvirt_backend, running_vm):
    (qemu_pid,) = libvirt_backend.runtime_pids(running_vm)
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    mine = [line.split()[3] for line in listening.splitlines() if f"pid={qemu_pid}," in line]
    assert mine == [f"127.0.0.1:{running_vm.host_port}"]
    assert readiness.attempt("redis", "127.0.0.1", running_vm.host_port)


def test_milestones_come_in_order(libvirt_backend, running_vm):
    libvirt_backend.poll(running_vm)
    marks = running_vm.marks
    assert marks["created"] <= marks["process"] <= marks["kernel"] <= marks["init"] <= marks["network"]
    assert running_vm.facts["guest_uptime_s"]["init"] > 0
    assert running_vm.held.console.exists()


def test_three_starts_boot_to_ready_and_leave_nothing(libvirt_backend, redis_scenario, vm_artifact):
    run_id = lifecycle.new_run_id()
    side = lifecycle.measure(libvirt_backend, redis_scenario, vm_artifact, 3, run_id, lambda message: None)
    assert side.startup is not None and side.kernel is not None and side.memory is not None
    ready = [r["ready_s"] for r in side.startup.repeats]
    print(f"\nTCG boot-to-ready over 3 starts: median {statistics.median(ready):.2f}s {ready}")
    assert len(ready) == 3 and statistics.median(ready) < 30
    assert side.kernel.shared is False and side.accel == "tcg"
    assert side.memory.runtime.processes == 1
    assert_nothing_left(run_id)


def test_readiness_timeout_leaves_nothing(libvirt_backend, redis_scenario, vm_artifact):
    run_id = lifecycle.new_run_id()
    hurried = dataclasses.replace(redis_scenario, timeouts=Timeouts(vm_ready_s=0.5))
    with pytest.raises(NotReady):
        lifecycle.measure(libvirt_backend, hurried, vm_artifact, 1, run_id, lambda message: None)
    assert_nothing_left(run_id)


@pytest.mark.parametrize("problem", ["missing", "corrupt", "empty"])
def test_a_bad_disk_fails_fast_and_leaves_nothing(libvirt_backend, redis_scenario, vm_artifact, tmp_path, problem):
    disk = tmp_path / "disk.qcow2"
    if problem == "corrupt":
        disk.write_bytes(os.urandom(1 << 16))
    elif problem == "empty":  # a valid qcow2 with no filesystem: the guest's initramfs says so
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    # the same artifact (its kernel, command line, accelerator) on a bad disk
    bad = dataclasses.replace(vm_artifact, ref=str(disk), paths={**vm_artifact.paths, "disk": str(disk)})
    run_id = lifecycle.new_run_id()
    started = time.monotonic()
    with pytest.raises((BackendError, BuildError)) as caught:
        lifecycle.measure(libvirt_backend, redis_scenario, bad, 1, run_id, lambda message: None)
    assert time.monotonic() - started < 60  # not the 300 s readiness deadline
    if problem == "empty":
        assert "initramfs-error" in str(caught.value)
    assert_nothing_left(run_id)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_signal_mid_boot_removes_everything(libvirt_backend, vm_artifact, signum):
    before = set(virsh("list", "--all", "--name").split())
    proc = Explorer("run", "redis", "--sides", "microvm", "--repeat", "1")
    try:
        deadline, name = time.monotonic() + 180, None
        while name is None and time.monotonic() < deadline and proc.poll() is None:
            new = set(virsh("list", "--name").split()) - before
            name = next((d for d in new if re.fullmatch(r"explorer-redis-microvm-[0-9a-f]+-0", d)), None)
            time.sleep(0.1)
        assert name, "the CLI started no VM"
        time.sleep(1.0)  # mid-boot: the guest needs several seconds to be ready
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert_nothing_left(name.split("-")[-2])


def test_cpu_maximum_is_passed_to_qemu(libvirt_backend, redis_scenario, vm_artifact):
    scen = dataclasses.replace(redis_scenario, vm=VMSpec(memory_mib=384, vcpus=2, cpu="maximum"))
    run_id = lifecycle.new_run_id()
    target = libvirt_backend.create(scen, vm_artifact, run_id, 0)
    try:
        assert target.held.process is not None  # its QEMU, found by the engine
        args = ps_e("args")[target.held.process.pid]
        assert "-cpu max" in args and "-smp 2" in args and "-m 384" in args
        readiness.wait_ready(
            "redis", "127.0.0.1", target.host_port, time.monotonic() + 120, between=lambda: libvirt_backend.poll(target)
        )
    finally:
        libvirt_backend.destroy(target)
        libvirt_backend.destroy(target)  # idempotent
    assert_nothing_left(run_id)


def test_a_vm_bigger_than_free_memory_is_refused_before_anything_starts(libvirt_backend, redis_scenario):
    import psutil

    too_big = psutil.virtual_memory().available // 2**20 + 1024
    with pytest.raises(UsageError) as caught:
        libvirt_backend.prepare(dataclasses.replace(redis_scenario, vm=VMSpec(memory_mib=too_big)))
    assert caught.value.exit_code == 2


def test_libvirtd_not_answering_is_exit_3_with_a_hint(monkeypatch):
    from explorer.engines import domain

    monkeypatch.setattr(domain, "URI", "qemu:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(BackendUnavailable) as caught:
        domain.Hypervisor().check()
    assert caught.value.exit_code == 3 and "setup-host" in (caught.value.hint or "")


CHILD = """
import sys, time
from explorer import scenario
from explorer.backends import backend_for
backend = backend_for("microvm")
scen = scenario.load("redis")
target = backend.create(scen, backend.prepare(scen), sys.argv[1], 0)
print(target.name, flush=True)
time.sleep(600)
"""


def test_clean_spares_a_live_run_and_reaps_it_once_its_process_is_killed(libvirt_backend, vm_artifact):
    run_id = lifecycle.new_run_id()
    child = subprocess.Popen([sys.executable, "-c", CHILD, run_id], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        name = child.stdout.readline().strip()
        assert name == f"explorer-redis-microvm-{run_id}-0", name
        assert not [r for r in libvirt_backend.clean() if run_id in r]  # `explorer clean` elsewhere: spared
        assert name in virsh("list", "--name").split()
        child.kill()  # SIGKILL: no cleanup can run in the child; the VM is now a leftover
        child.wait()
        removed = libvirt_backend.clean()
        assert f"domain {name}" in removed and any("work dir" in r and run_id in r for r in removed)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        libvirt_backend.clean(run_id)
    assert_nothing_left(run_id)
