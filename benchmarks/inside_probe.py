"""The inside probe's step of a run (explorer/inside_run.py): what it adds to a side, against a
bare floor in the same run, on one ready runc container.

explorer's figure is inside_run.measure() whole: the probe delivered through the side's channel,
run as the workload's user and as root inside, removed, the host's reference read, the workload's
filter read from the host for the cross-check, and the record made. The floor is the same probe
by the docker SDK alone: copied in with put_archive (docker cp), the same two runs by exec_run,
removed by one more. Rounds alternate the two. Target: the step adds at most 1 s to a side's run
(the issue's bound, on the median); the ratio to the floor is printed too. Exits 1 when missed.

    python benchmarks/inside_probe.py [--rounds N] [--scenario redis]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import time

from explorer import inside_run, lifecycle, readiness, scenario
from explorer.backends import backend_for
from explorer.errors import BackendUnavailable
from explorer.probes.inside import build
from explorer.probes.inside.run import TIMEOUT_S

TARGET_S = 1.0
__all__ = ["main", "verdict"]  # verdict: what this benchmark exits by (tests/unit/test_bench_verdicts.py)


def verdict(median_s: float, target_s: float = TARGET_S) -> tuple[bool, str]:
    met = median_s <= target_s
    return met, f"  the inside step adds {median_s:.2f} s median to a side (target <= {target_s:.2f} s): " + (
        "met" if met else "MISSED"
    )


def by_hand(container, binary: bytes) -> float:
    """docker cp (put_archive) + two exec_run of the probe + exec_run rm: the SDK alone."""
    t0 = time.monotonic()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("explorer-inside-floor")
        info.size, info.mode = len(binary), 0o755
        tar.addfile(info, io.BytesIO(binary))
    container.put_archive("/tmp", archive.getvalue())
    for user in ("65534:65534", "0"):  # a plain user's run (as exec -u starts it), and root's
        done = container.exec_run(["/tmp/explorer-inside-floor", "--timeout", str(TIMEOUT_S)], user=user)
        assert done.exit_code == 0, done.output[-300:]
    container.exec_run(["/bin/rm", "-f", "/tmp/explorer-inside-floor"], user="0")
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", default="redis")
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    try:
        backend = backend_for("runc")
        backend.check()
    except BackendUnavailable as exc:
        print(f"runc: skipped ({exc})")
        return 1
    binary = build.build()
    data = binary.read_bytes()
    artifact = backend.prepare(scen)
    run_id = lifecycle.new_run_id()
    target = backend.create(scen, artifact, run_id, 0)
    floor, ours, runs = [], [], []
    try:
        readiness.wait_ready(scen.workload.ready, "127.0.0.1", target.host_port, time.monotonic() + 60)
        guest = backend.guest_view(target)
        host_pids = [target.held.init_pid]
        for _ in range(args.rounds):
            floor.append(by_hand(target.held.container, data))
            t0 = time.monotonic()
            record = inside_run.measure(backend, scen, target, guest, host_pids)
            ours.append(time.monotonic() - t0)
            assert record.available, record.reason
            runs.append(sum(run.wall_s for run in record.runs))
    finally:
        backend.destroy(target)
        backend.clean(run_id)
    f, o = statistics.median(floor), statistics.median(ours)
    print(f"the inside probe on one ready runc container ({args.scenario}), {args.rounds} rounds, alternating")
    print(f"  bare floor (put_archive + 2 exec_run + rm, the SDK alone): median {f:.3f} s (min {min(floor):.3f})")
    print(f"  explorer (inside_run.measure, the whole step):            median {o:.3f} s (min {min(ours):.3f})")
    print(f"    of which its two runs inside, as the channel timed them:  median {statistics.median(runs):.3f} s")
    print(f"  ratio explorer/floor: {o / f:.2f}x (explorer also reads the host's reference and the filter)")
    met, line = verdict(o)
    print(line)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
