"""VM start-to-ready: explorer's measurement against a bare floor, in one run.

explorer's figure is its own `ready_s` from lifecycle.measure: LibvirtBackend.create (overlay,
transient domain) -> protocol-level readiness on 127.0.0.1. The floor is QEMU started by
hand (explorer.images.microvm.qemu_floor) with the same kernel, initramfs, disk overlay, netdev,
memory, vCPUs and accelerator, timed the same way (from before its overlay is made) and
waited on with the same readiness loop. Rounds alternate floor and explorer so machine
noise hits both alike. Targets: explorer within 1.10x of the floor; TCG boot-to-ready 12 s
or less.

The full-OS VM (fullvm) is measured the same way against QEMU started by hand with its own
kernel, initrd, disk, memory, the SSH forward and the guest agent's port (target 1.05x; full
OS ready in 60 s or less under TCG), and `vagrant up` (the vagrant side) against the fullvm
side: Vagrant's own overhead, reported, not targeted.

    python benchmarks/vm_startup.py [--repeat N] [--scenario redis] [--sides microvm,fullvm,vagrant]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from explorer import lifecycle, readiness, scenario, sides
from explorer.backends.base import Backend
from explorer.errors import BackendUnavailable
from explorer.images.microvm import qemu_floor
from explorer.images.microvm.vm_image import VMImage
from explorer.model import Artifact
from explorer.scenario import Scenario


def floor_start_to_ready(image: VMImage, scen: Scenario, accel: str, backend: Backend) -> dict[str, float]:
    """Overlay + hand-started QEMU + the readiness loop: what a VM start costs without libvirt.
    The domain's extras (memory, SSH forward, guest-agent port) are the side's machine's own."""
    vm_spec, machine = scen.vm, backend.engine.machine
    t0 = time.monotonic()
    with qemu_floor.floor_vm(
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
        # guest's network is up, so the floor is not slowed by them.
        readiness.wait_for_mark(vm.marks, backend.engine.ready_after, vm.poll, t0 + scen.timeouts.vm_ready_s)
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
    return side["startup"]["repeats"][0]


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


def summary(label: str, values: list[float]) -> str:
    return f"  {label:<44} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})"


def milestones(runs: list[dict[str, float]], keys: tuple[str, ...]) -> None:
    """Where the time goes: the same console milestones on both sides, from the same t0."""
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if len(values) == len(runs):
            print(summary(f"  milestone {key}:", values))


# side -> (ratio target, TCG boot-to-ready target in seconds)
TARGETS = {"microvm": (1.10, 12.0), "fullvm": (1.05, 60.0)}


def bench_against_floor(name: str, scen: Scenario, rounds: int) -> float | None:
    backend = sides.backend_for(name)
    try:
        engine = backend.check()
    except BackendUnavailable as exc:
        print(f"{name}: not measured ({exc})")
        return None
    artifact = backend.prepare(scen, lambda message: print(f"  ({message})", file=sys.stderr))
    accel = artifact.facts["accel"]
    image = image_of(artifact)
    floor_start_to_ready(image, scen, accel, backend)  # warm-up (page cache, libvirt caches), not counted
    explorer_start_to_ready(backend, scen, artifact)
    floor_runs, explorer_runs = [], []
    for _ in range(rounds):
        floor_runs.append(floor_start_to_ready(image, scen, accel, backend))
        explorer_runs.append(explorer_start_to_ready(backend, scen, artifact))
    floor, explorer = [r["ready_s"] for r in floor_runs], [r["ready_s"] for r in explorer_runs]
    f, e = statistics.median(floor), statistics.median(explorer)
    ratio_target, boot_target = TARGETS[name]
    print(
        f"{backend.side.title} start-to-ready, {rounds} rounds, scenario {scen.name}, "
        f"{accel.upper()} ({artifact.facts.get('accel_reason')}), libvirt {engine['libvirt_version']}, "
        f"QEMU {engine['qemu_version']}, {artifact.facts['memory_mib']} MiB, {scen.vm.vcpus} vCPU"
    )
    print(summary("bare floor (qemu by hand + readiness loop):", floor))
    milestones(floor_runs, ("process_s", "kernel_s", "init_s", "network_s"))
    print(summary(f"explorer ({type(backend).__name__} create -> ready_s):", explorer))
    milestones(explorer_runs, tuple(f"{m}_s" for m in backend.milestones if m != "ready"))
    print(f"  ratio explorer/floor: {e / f:.2f}x (target <= {ratio_target:.2f}x)")
    if accel == "tcg":
        print(
            f"  TCG boot-to-ready median: {e:.2f} s (target <= {boot_target:g} s): "
            f"{'ok' if e <= boot_target else 'MISSED'}"
        )
    return e


def bench_vagrant(scen: Scenario, rounds: int, fullvm_ready: float | None) -> None:
    """`vagrant up` to ready, against the fullvm side's figure of this run (same image)."""
    backend = sides.backend_for("vagrant")
    try:
        backend.check()
    except BackendUnavailable as exc:
        print(f"vagrant: not measured ({exc})")
        return
    artifact = backend.prepare(scen, lambda message: print(f"  ({message})", file=sys.stderr))
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
    parser.add_argument("--sides", default="microvm,fullvm,vagrant")
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    chosen = sides.parse(args.sides) or ()
    fullvm_ready = None
    for name in chosen:
        if name in TARGETS:
            rounds = args.repeat if name == "microvm" else max(1, min(args.repeat, 2))
            ready = bench_against_floor(name, scen, rounds)
            fullvm_ready = ready if name == "fullvm" else fullvm_ready
    if "vagrant" in chosen:
        bench_vagrant(scen, 1, fullvm_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
