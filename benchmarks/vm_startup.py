"""VM start-to-ready: explorer's measurement against bare floors, in one run.

explorer's figure is its own `ready_s` from lifecycle.measure: the engine's create (overlay,
transient domain) -> protocol-level readiness on 127.0.0.1. Rounds alternate floors and
explorer so that machine noise hits all alike; every floor is timed the same way (from before
its overlay is made) and waited on with the same readiness loop.

- microVM: against bare libvirt, libvirt-python's createXML of the same domain (explorer's
  XML and staged files), target <= 1.05x; QEMU started by hand with the same kernel,
  initramfs, disk overlay, netdev, memory, vCPUs and accelerator is measured too, and
  libvirt's own cost over it is reported apart (the old target, 1.10x against QEMU by hand,
  included it). TCG boot-to-ready 12 s or less.
- snapshot (the restored microVM): its restore-to-ready against the same restore by hand
  (restoreFlags of the same saved state with the same XML changes), target <= 1.05x, at least
  9 rounds (single restores spread widely), printed next to the microVM's boot.
- full-OS VM: as the microVM, against bare libvirt, target <= 1.05x; QEMU by hand with its own
  kernel, initrd, disk, memory, the SSH forward and the guest agent's port is measured too,
  and libvirt's own cost over it reported apart (the old target, 1.05x against QEMU by hand,
  included it). Full OS ready in 60 s or less under TCG.
- Vagrant: `vagrant up` against the fullvm side: Vagrant's own overhead, reported, not targeted.

Exits 1 when a target is missed.

    python benchmarks/vm_startup.py [--repeat N] [--scenario redis] [--sides microvm,snapshot,fullvm,vagrant]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bare_qemu  # benchmarks/bare_qemu.py, beside this file

from explorer import lifecycle, readiness, scenario, sides
from explorer.backends import backend_for
from explorer.backends.base import Backend
from explorer.backends.fullvm import FULL_OS
from explorer.backends.microvm import MICROVM
from explorer.engines.domain import Hypervisor, domain_xml
from explorer.engines.libvirt import LibvirtEngine
from explorer.engines.snapshot import STATE, restored_xml
from explorer.errors import BackendUnavailable
from explorer.guest import ConsoleWatcher
from explorer.images.microvm.vm_image import VMImage
from explorer.images.vmdisk import make_overlay
from explorer.model import Artifact, Target, free_port
from explorer.scenario import Scenario

MACHINES = {"microvm": MICROVM, "fullvm": FULL_OS}


@dataclass
class Forwards:
    """The bare QEMU's handle as the machine's probes read one: its forwarded ports."""

    forwarded_ports: dict[int, int]  # each libvirt side's machine, as its backend file assembles it


def gate(
    marks: dict[str, float], poll: Callable[[], None], forwards: dict[int, int], machine: Any, milestone: str | None
) -> Callable[[], None]:
    """A poll that records the engine's gate milestone in `marks` as explorer does: off the
    console (`poll` copies it), or with the machine's own probe (the full-OS VM: a refused
    forward), on the host ports `forwards` maps guest ports to."""
    probe = next((p for p in machine.probes if p.milestone == milestone), None)
    if probe is None:
        return poll
    target = Target(side="floor", name="floor", run_id="floor", host_port=0, handle=Forwards(dict(forwards)))
    state: dict[str, Any] = {}

    def gated() -> None:
        poll()
        if milestone not in marks and probe.reached(target, state):
            marks[milestone] = time.monotonic()
            probe.close(state)

    return gated


def floor_start_to_ready(image: VMImage, scen: Scenario, accel: str, backend: Backend) -> dict[str, float]:
    """Overlay + hand-started QEMU + the readiness loop: what a VM start costs without libvirt.
    The domain's extras (memory, SSH forward, guest-agent port) are the side's machine's own."""
    vm_spec, machine = scen.vm, MACHINES[backend.side.name]
    t0 = time.monotonic()
    with bare_qemu.floor_vm(
        image,
        scen.workload.port,
        memory_mib=machine.memory_mib(scen),
        vcpus=vm_spec.vcpus,
        cpu=vm_spec.cpu,
        accel=accel,
        agent=machine.agent,
        view=bool(machine.view_port),
        extra_ports=dict.fromkeys(machine.extra_ports, 0),
    ) as vm:
        # The same gate as explorer's (the engine's ready_after): no readiness attempt before the
        # guest's network is up, seen the same way (the console, or the machine's own probe).
        gated = gate(vm.marks, vm.poll, vm.extra_ports, machine, backend.ready_after)
        readiness.wait_for_mark(vm.marks, backend.ready_after, gated, t0 + scen.timeouts.vm_ready_s)
        ready = readiness.wait_ready(
            scen.workload.ready,
            "127.0.0.1",
            vm.host_port,
            t0 + scen.timeouts.vm_ready_s,
            between=vm.poll,
            what="the hand-started VM",
        )
        marks = {f"{name}_s": when - t0 for name, when in vm.marks.items() if name in ("kernel", "init", "network")}
    return {"process_s": vm.started - t0, **marks, "ready_s": ready - t0}


def explorer_start_to_ready(backend: Backend, scen: Scenario, artifact: Artifact) -> dict[str, float]:
    side = lifecycle.measure(backend, scen, artifact, 1, lifecycle.new_run_id(), lambda message: None)
    assert side.startup is not None  # measured: its starts are recorded
    return side.startup.repeats[0]


def image_of(artifact: Artifact) -> VMImage:
    """The very files the libvirt side boots."""
    paths = {key: Path(value) for key, value in artifact.paths.items()}
    return VMImage(
        paths["disk"],
        paths["kernel"],
        paths["initramfs"],
        artifact.facts["cmdline"],
        artifact.facts["kernel_version"],
        dict(artifact.facts),
    )


def _accel(artifact: Artifact) -> str:
    return artifact.accel.mode if artifact.accel else "tcg"


def summary(label: str, values: list[float]) -> str:
    return f"  {label:<44} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})"


def milestones(runs: list[dict[str, float]], keys: tuple[str, ...]) -> None:
    """Where the time goes: the same console milestones on both sides, from the same t0."""
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if len(values) == len(runs):
            print(summary(f"  milestone {key}:", values))


def libvirt_start_to_ready(backend: Backend, scen: Scenario, artifact: Artifact) -> dict[str, float]:
    """The same domain (explorer's XML and staged files) created with libvirt-python's createXML
    and waited on with the same readiness loop: what a start costs with libvirt and without
    explorer's own bookkeeping (milestones, the view port, labels, background removal). The
    engine is a fresh one of the side's kind and machine, its public operations used by hand."""
    engine = LibvirtEngine(backend.side, MACHINES[backend.side.name])
    t0 = time.monotonic()
    target, workdir = engine.new_target(scen, lifecycle.new_run_id(), 0)
    domain, watcher = None, None
    try:
        spec = engine.spec(target, scen, artifact, workdir, 0)
        spec.host_port = free_port()
        spec.extra_ports = {port: free_port() for port in spec.extra_ports}
        domain = engine.hypervisor.conn.createXML(domain_xml(spec), 0)
        created = time.monotonic()
        watcher = ConsoleWatcher(spec.console)
        watcher.start()
        deadline = t0 + scen.timeouts.vm_ready_s
        # the same gate as explorer's: off the console, or the machine's own probe
        gated = gate(watcher.seen, watcher.read_new, spec.extra_ports, engine.machine, engine.ready_after)
        readiness.wait_for_mark(watcher.seen, engine.ready_after, gated, deadline)
        ready = readiness.wait_ready(scen.workload.ready, "127.0.0.1", spec.host_port, deadline, what="the VM")
    finally:
        if watcher is not None:
            watcher.stop()
        if domain is not None:
            domain.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"created_s": created - t0, "ready_s": ready - t0}


def restore_start_to_ready(backend: Backend, scen: Scenario, artifact: Artifact) -> dict[str, float]:
    """The snapshot side's start by hand: a fresh overlay on the saved disk, the saved XML
    changed for the instance (explorer's restored_xml), libvirt-python's restoreFlags, and the
    same readiness loop (a stricter floor than `virsh restore`, which adds virsh's own start)."""
    folder = Path(artifact.paths["snapshot"])
    hypervisor = Hypervisor()  # a connection of the benchmark's own
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"explorer-vm-bench-0-{os.getpid()}-"))
    if artifact.snapshot is None:
        raise SystemExit("the snapshot side's artifact holds no saved state: prepare did not save one")
    name = artifact.snapshot.domain
    try:
        workdir.chmod(0o711)
        overlay, console, port = workdir / "overlay.qcow2", workdir / "console.log", free_port()
        make_overlay(folder / "overlay.qcow2", overlay)
        if hypervisor.qemu_ids:
            os.chown(overlay, *hypervisor.qemu_ids)
        labels = {"run": "bench", "scenario": scen.name, "index": 0, "pid": os.getpid(), "workdir": workdir}
        xml = restored_xml((folder / "domain.xml").read_text(), port, overlay, console, labels)
        hypervisor.conn.restoreFlags(str(folder / STATE), xml, 0)
        resumed = time.monotonic()
        deadline = t0 + scen.timeouts.vm_ready_s
        ready = readiness.wait_ready(scen.workload.ready, "127.0.0.1", port, deadline, what="the restored VM")
    finally:
        hypervisor.destroy_domain(name)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"resumed_s": resumed - t0, "ready_s": ready - t0}


def verdict(value: float, target: float | None, unit: str = "x") -> tuple[bool, str]:
    """Whether a figure (a ratio, or seconds with unit " s") is at most its target, and how it
    reads: `1.07x (target <= 1.05x: MISSED)`. No target: reported, always passed. main's exit
    status follows every verdict printed."""
    shown = f"{value:.2f}{unit}"
    if target is None:
        return True, shown
    passed = value <= target
    return passed, f"{shown} (target <= {target:.2f}{unit}: {'ok' if passed else 'MISSED'})"


def ratio_line(label: str, explorer: list[float], floor: list[float], target: float | None) -> bool:
    passed, text = verdict(statistics.median(explorer) / statistics.median(floor), target)
    print(f"  ratio {label}: {text}")
    return passed


def header(backend: Backend, scen: Scenario, artifact: Artifact, engine: dict, rounds: int) -> None:
    print(
        f"{backend.side.title} start-to-ready, {rounds} rounds, scenario {scen.name}, "
        f"{_accel(artifact).upper()} ({artifact.accel.reason if artifact.accel else '?'}), libvirt "
        f"{engine['libvirt_version']}, QEMU {engine['qemu_version']}, {artifact.facts['memory_mib']} MiB, "
        f"{scen.vm.vcpus} vCPU"
    )


def prepared(name: str, scen: Scenario) -> tuple[Backend, Artifact, dict] | None:
    backend = backend_for(name)
    try:
        engine = backend.check()
    except BackendUnavailable as exc:
        print(f"{name}: not measured ({exc})")
        return None
    return backend, backend.prepare(scen, lambda message: print(f"  ({message})", file=sys.stderr)), engine


# explorer against bare libvirt (createXML of the same domain), and the old target against QEMU by
# hand, which libvirt's own cost is part of
BOOTED_TARGETS = {"microvm": (1.05, 1.10), "fullvm": (1.05, 1.05)}
SNAPSHOT_TARGET = 1.05  # explorer's restore against the same restore by hand
# a restore costs ~0.7 s, and single ones here range 0.59-1.04 s: 3 rounds' median missed
# 1.05x once (1.17x) and met it in 7 and 9 (0.87x, 0.94x); rounds are cheap, so at least 9
SNAPSHOT_MIN_ROUNDS = 9
TCG_BOOT_TARGETS_S = {"microvm": 12.0, "fullvm": 60.0}


def bench_booted(name: str, scen: Scenario, rounds: int) -> tuple[bool, float | None]:
    """A booted VM side (the microVM, the full-OS VM): QEMU by hand, bare libvirt and explorer,
    alternating, the same image and readiness loop; explorer's target against bare libvirt."""
    found = prepared(name, scen)
    if found is None:
        return True, None
    backend, artifact, engine = found
    target, old_target = BOOTED_TARGETS[name]
    image, accel = image_of(artifact), _accel(artifact)
    floor_start_to_ready(image, scen, accel, backend)  # warm-up (page cache, libvirt caches), not counted
    if name == "microvm":  # a few seconds: explorer's own first start warmed too (the full-OS VM's takes 30 s)
        explorer_start_to_ready(backend, scen, artifact)
    qemu_runs, libvirt_runs, explorer_runs = [], [], []
    for _ in range(rounds):
        qemu_runs.append(floor_start_to_ready(image, scen, accel, backend))
        libvirt_runs.append(libvirt_start_to_ready(backend, scen, artifact))
        explorer_runs.append(explorer_start_to_ready(backend, scen, artifact))
    qemu, bare, ours = ([r["ready_s"] for r in runs] for runs in (qemu_runs, libvirt_runs, explorer_runs))
    header(backend, scen, artifact, engine, rounds)
    print(summary("QEMU by hand + readiness loop:", qemu))
    milestones(qemu_runs, ("process_s", "kernel_s", "init_s", "network_s"))
    print(summary("bare libvirt (createXML) + readiness loop:", bare))
    milestones(libvirt_runs, ("created_s",))
    print(summary("explorer (create -> ready_s):", ours))
    milestones(explorer_runs, tuple(f"{m}_s" for m in backend.milestones if m != "ready"))
    ok = ratio_line("explorer / bare libvirt", ours, bare, target)
    ratio_line(
        f"libvirt's own cost: bare libvirt / QEMU by hand (reported; the old target {old_target:.2f}x "
        "for explorer against QEMU by hand included it)",
        bare,
        qemu,
        None,
    )
    ratio_line("explorer / QEMU by hand", ours, qemu, None)
    return ok and tcg_boot(accel, name, ours), statistics.median(ours)


def tcg_boot(accel: str, name: str, values: list[float]) -> bool:
    if accel != "tcg":
        return True
    passed, text = verdict(statistics.median(values), TCG_BOOT_TARGETS_S[name], " s")
    print(f"  TCG boot-to-ready median: {text}")
    return passed


def bench_snapshot(scen: Scenario, rounds: int, microvm_ready: float | None) -> bool:
    """Restore-to-ready: explorer's snapshot side against the same restore by hand."""
    found = prepared("snapshot", scen)
    if found is None:
        return True
    rounds = max(rounds, SNAPSHOT_MIN_ROUNDS)
    backend, artifact, engine = found
    try:
        restore_start_to_ready(backend, scen, artifact)  # warm-up, not counted
        floor_runs, explorer_runs = [], []
        for _ in range(rounds):
            floor_runs.append(restore_start_to_ready(backend, scen, artifact))
            explorer_runs.append(explorer_start_to_ready(backend, scen, artifact))
    finally:
        backend.release(artifact)
    floor, ours = [r["ready_s"] for r in floor_runs], [r["ready_s"] for r in explorer_runs]
    header(backend, scen, artifact, engine, rounds)
    snapshot = artifact.snapshot
    assert snapshot is not None  # restore_start_to_ready refused an artifact without one
    print(
        f"  the snapshot: booted to ready in {snapshot.boot_to_ready_s:.2f} s, saved in {snapshot.save_s:.2f} s "
        f"to {snapshot.state_bytes / 2**20:.1f} MiB (prepare, outside the measured starts)"
    )
    print(summary("restore by hand (restoreFlags) + readiness loop:", floor))
    milestones(floor_runs, ("resumed_s",))
    print(summary("explorer (restore -> ready_s):", ours))
    milestones(explorer_runs, tuple(f"{m}_s" for m in backend.milestones if m != "ready"))
    ok = ratio_line("explorer / restore by hand", ours, floor, SNAPSHOT_TARGET)
    if microvm_ready:
        print(
            f"  next to the microVM's boot: restore {statistics.median(ours):.2f} s against boot "
            f"{microvm_ready:.2f} s to ready ({microvm_ready / statistics.median(ours):.1f}x faster)"
        )
    return ok


def bench_vagrant(scen: Scenario, rounds: int, fullvm_ready: float | None) -> None:
    """`vagrant up` to ready, against the fullvm side's figure of this run (same image)."""
    found = prepared("vagrant", scen)
    if found is None:
        return
    backend, artifact, _ = found
    runs = [explorer_start_to_ready(backend, scen, artifact) for _ in range(rounds)]
    print(f"Vagrant VM (vagrant up) start-to-ready, {rounds} rounds, scenario {scen.name}")
    print(summary("explorer (vagrant up -> ready_s):", [r["ready_s"] for r in runs]))
    milestones(runs, ("process_s", "ssh_s", "up_s"))
    if fullvm_ready:
        ratio = statistics.median(r["ready_s"] for r in runs) / fullvm_ready
        print(f"  Vagrant's overhead: {ratio:.2f}x the fullvm side's start-to-ready (reported, not targeted)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (one floor start + one explorer start each)")
    parser.add_argument("--scenario", default="redis")
    parser.add_argument("--sides", default="microvm,snapshot,fullvm,vagrant")
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    chosen = sides.parse(args.sides) or ()
    ok, microvm_ready, fullvm_ready = True, None, None
    if "microvm" in chosen:
        passed, microvm_ready = bench_booted("microvm", scen, args.repeat)
        ok = ok and passed
    if "snapshot" in chosen:
        ok = bench_snapshot(scen, args.repeat, microvm_ready) and ok
    if "fullvm" in chosen:
        passed, fullvm_ready = bench_booted("fullvm", scen, args.repeat)
        ok = ok and passed
    if "vagrant" in chosen:
        bench_vagrant(scen, 1, fullvm_ready)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
