"""What explorer's load phase costs and how faithful its figure is, in one run:

1. explorer's ops/s for the runc side against the floor: the same client with the same
   parameters run by hand (redis-benchmark as a user would type it: no session of its own, no
   calibration batch, no CPU bookkeeping around it) against the same container, started with
   the Docker SDK from the scenario's image, both through the port Docker published on
   127.0.0.1 (the side's first path; its own-netns path is left out here). explorer's load
   phase (its LoadPhase.side, one round per call, with its calibration batch) and the hand-run
   client alternate, round by
   round, their order swapped every round, so that this shared machine's noise falls on both
   alike. Target: explorer's median within 5% of the hand-run median.
2. The time the load phase adds to a run: `explorer run SCENARIO --sides runc` in process, the
   native reference and the side's load phase from the run's own phase record, against the
   run's total (printed; no target).

The images must be built already (`explorer build redis`).

    python benchmarks/load_overhead.py [--scenario redis] [--seconds 2] [--rounds 9]

9 rounds by default: single rounds of either kind spread over +-20% here (19,900-34,200 ops/s
in one run of 8 pairs), which 5 rounds' medians could not tell from a 5% difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from explorer import lifecycle, readiness, scenario
from explorer.backends import backend_for
from explorer.dockerd import docker_client
from explorer.load import rounds
from explorer.load.clients import RedisBenchmark
from explorer.load.phase import LoadPhase
from explorer.result import Phases

TARGET = 0.05


def verdict(ratio: float, target: float = TARGET) -> tuple[bool, str]:
    """Whether explorer's ops/s is within `target` of the hand-run client's, either way (a load
    phase that reads faster than by hand is as wrong as one that reads slower), and how it reads;
    the exit status follows it."""
    passed = abs(ratio - 1) <= target
    return passed, f"explorer / by hand = {ratio:.3f}x (target within {target:.0%}: {'met' if passed else 'MISSED'})"


def by_hand(client: RedisBenchmark, port: int) -> float:
    """redis-benchmark as typed by hand: its own CSV's rates, combined as explorer combines them."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(client.clients), "-P"]
    argv += [str(client.pipeline), "-d", str(client.data_bytes), "-n", str(client.requests), "-t", "set,get", "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    return client.parse(out)["ops_s"]


def alternating(scen: scenario.Scenario, settings: rounds.Settings) -> tuple[list[float], list[float], int]:
    """(explorer's ops/s, by hand's ops/s, requests per test) over the same container, alternating."""
    backend = backend_for("runc")
    artifact = backend.prepare(scen)
    run_id = lifecycle.new_run_id()
    target = backend.create(scen, artifact, run_id, 0)
    phase = LoadPhase(rounds.Settings(seconds=settings.seconds, rounds=1, trace=False, every_path=False))
    ours: list[float] = []
    hand: list[float] = []
    requests = 0
    try:
        readiness.wait_ready("redis", "127.0.0.1", target.host_port, time.monotonic() + 60)

        def explorer_round() -> None:
            nonlocal requests
            out = phase.side(backend, scen, target, None, lambda message: None)  # a container: no accelerator
            if out.get("status") != "ok":
                raise SystemExit(f"explorer's load did not run: {out.get('reason')}")
            ours.append(out["summary"]["ops_s"]["median"])
            requests = requests or out["rounds"][0]["ops"] // 2  # the size explorer calibrated: SET and GET each

        explorer_round()  # warm-up, and the request count the hand-run client uses: not counted
        ours.clear()
        client = RedisBenchmark(**dict(scen.load.params), requests=requests)
        by_hand(client, target.host_port)  # warm-up, not counted
        for index in range(settings.rounds):
            steps = [explorer_round, lambda: hand.append(by_hand(client, target.host_port))]
            for step in steps if index % 2 == 0 else reversed(steps):
                step()
    finally:
        backend.destroy(target)
        backend.clean(run_id)
        docker_client().close()
    return ours, hand, requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="redis")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    if scen.load is None or scen.load.kind != "redis":
        print(f"{args.scenario}: this benchmark compares redis-benchmark runs; the scenario's load is {scen.load}")
        return 2
    settings = rounds.Settings(seconds=args.seconds, rounds=args.rounds, trace=False)

    ours, hand, requests = alternating(scen, settings)
    mine, floor = statistics.median(ours), statistics.median(hand)
    passed, text = verdict(mine / floor)
    print(f"runc side, one container, {args.rounds} rounds each, alternating, of {requests} SET + {requests} GET:")
    print(f"  explorer:  median {mine:,.0f} ops/s (range {min(ours):,.0f}-{max(ours):,.0f})")
    print(f"  by hand:   median {floor:,.0f} ops/s (range {min(hand):,.0f}-{max(hand):,.0f})")
    print(f"  {text}")
    pairs = sorted(o / h for o, h in zip(ours, hand))
    print(
        f"  round by round (each pair run back to back): explorer / by hand {pairs[0]:.2f}x-{pairs[-1]:.2f}x, "
        f"median {statistics.median(pairs):.3f}x; a single round's spread on this shared machine is "
        f"{(max(hand) - min(hand)) / floor:.0%} of the hand-run median"
    )

    started = time.monotonic()
    result = lifecycle.run(scen, lifecycle.Choice(names=("runc",)), 1, load=settings)
    total = time.monotonic() - started
    phases = result.phases or Phases()
    reference_s = phases.reference_s or 0.0
    load_s = reference_s + sum(p.load_s or 0.0 for p in phases.sides.values())
    runc = result.sides["runc"].load
    paths = len(runc.paths) if runc is not None and runc.paths else 1
    print(
        f"load phase of `explorer run {scen.name} --sides runc`: {load_s:.1f} s of a {total:.1f} s run "
        f"({load_s / total:.0%}): native reference {reference_s:.1f} s, runc side "
        f"{phases.sides['runc'].load_s or 0.0:.1f} s ({paths} paths, each calibrated, {args.rounds} rounds "
        f"of {args.seconds:g} s each)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
