"""What explorer's load phase costs and how faithful its figure is, in one run:

1. explorer's ops/s for the runc side (`explorer run SCENARIO --sides runc`, in process) against
   the floor: the same client with the same parameters run by hand (redis-benchmark as a user
   would type it: no session of its own, no calibration batch, no CPU bookkeeping around it)
   against the same kind of container, started by hand with the Docker SDK from the same image
   and published the same way, in the same run, alternating with explorer's rounds.
   Target: explorer's median within 5% of the hand-run median.
2. The time the load phase adds to a run: the native reference and each side's load phase, from
   the run's own phase record, against the run's total (printed; no target).

The images must be built already (`explorer build redis`).

    python benchmarks/load_overhead.py [--scenario redis] [--seconds 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from explorer import lifecycle, readiness, scenario
from explorer.images.container.source import docker_client
from explorer.load import rounds
from explorer.load.clients import RedisBenchmark
from explorer.sides import backend_for

TARGET = 0.05


def by_hand(client: RedisBenchmark, port: int) -> float:
    """redis-benchmark as typed by hand: its own CSV's rates, combined as explorer combines them."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(client.clients), "-P"]
    argv += [str(client.pipeline), "-d", str(client.data_bytes), "-n", str(client.requests), "-t", "set,get", "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    return client.parse(out)["ops_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="redis")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    if scen.load is None or scen.load.kind != "redis":
        print(f"{args.scenario}: this benchmark compares redis-benchmark runs; the scenario's load is {scen.load}")
        return 2
    settings = rounds.Settings(seconds=args.seconds, rounds=args.rounds, trace=False)

    started = time.monotonic()
    result = lifecycle.run(scen, lifecycle.Choice(names=("runc",)), 1, load=settings)
    total = time.monotonic() - started
    ours = result["sides"]["runc"]["load"]
    if ours.get("status") != "ok":
        print(f"explorer's load did not run: {ours.get('reason')}")
        return 1
    requests = ours["rounds"][0]["ops"] // 2  # the size explorer calibrated: SET and GET each

    backend = backend_for("runc")
    artifact = backend.prepare(scen)
    run_id = lifecycle.new_run_id()
    target = backend.create(scen, artifact, run_id, 0)
    hand: list[float] = []
    try:
        readiness.wait_ready("redis", "127.0.0.1", target.host_port, time.monotonic() + 60)
        client = RedisBenchmark(**dict(scen.load.params), requests=requests)
        by_hand(client, target.host_port)  # warm, as explorer's calibration batch warms its side
        hand = [by_hand(client, target.host_port) for _ in range(args.rounds)]
    finally:
        backend.destroy(target)
        backend.clean(run_id)
        docker_client().close()

    mine = ours["summary"]["ops_s"]["median"]
    floor = statistics.median(hand)
    gap = mine / floor - 1
    print(f"runc side, {args.rounds} rounds of {requests} SET + {requests} GET each:")
    print(
        f"  explorer:  median {mine:,.0f} ops/s (range {ours['summary']['ops_s']['min']:,.0f}-"
        f"{ours['summary']['ops_s']['max']:,.0f})"
    )
    print(f"  by hand:   median {floor:,.0f} ops/s (range {min(hand):,.0f}-{max(hand):,.0f})")
    verdict = "met" if abs(gap) <= TARGET else "MISSED"
    print(f"  explorer / by hand = {mine / floor:.3f}x (target within {TARGET:.0%}: {verdict})")
    phases = result["phases"]
    load_s = phases.get("reference_s", 0.0) + sum(p.get("load_s", 0.0) for p in phases["sides"].values())
    print(
        f"load phase: {load_s:.1f} s of a {total:.1f} s run ({load_s / total:.0%}): native reference "
        f"{phases.get('reference_s', 0.0):.1f} s, runc side {phases['sides']['runc'].get('load_s', 0.0):.1f} s "
        f"(calibration, {args.rounds} rounds of {args.seconds:g} s)"
    )
    return 0 if abs(gap) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
