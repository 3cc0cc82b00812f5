"""What the start-to-ready benchmarks share (container_startup.py, userns_startup.py,
nspawn_startup.py): a side's floor and explorer's own figure taken in turns, round by round, so
that the host's noise falls on both alike; a PING loop at explorer's own resolution; and the
verdict, whose line ends in `ok` or `MISSED` and whose result each benchmark's exit follows."""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from explorer import lifecycle, readiness, scenario
from explorer.backends import backend_for
from explorer.errors import BackendUnavailable

TARGET = 1.05


def verdict(ratio: float, target: float = TARGET) -> tuple[bool, str]:
    """Whether explorer's start-to-ready is within `target` times the floor's, and the line that
    says so: the exit status follows it, so `make bench` fails where a printed ratio misses."""
    passed = ratio <= target
    return passed, f"ratio explorer/floor: {ratio:.2f}x (target <= {target:.2f}x: {'ok' if passed else 'MISSED'})"


def pong_after(port: int, t0: float) -> float:
    """Seconds from `t0` until Redis on the host's 127.0.0.1:`port` answers PING (a socket,
    nothing of explorer's, tried at explorer's own interval)."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.settimeout(1)
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(readiness.INTERVAL_S)


def alternate(
    backend: Any, scen: Any, artifact: Any, rounds: int, by_hand: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """(the floor's seconds, explorer's ready_s), a warm-up floor first (not counted), then one
    of each per round."""
    floor, explorer = [], []
    by_hand()
    for _ in range(rounds):
        floor.append(by_hand())
        side = lifecycle.measure(backend, scen, artifact, 1, lifecycle.new_run_id(), lambda message: None)
        assert side.startup is not None  # measured: its starts are recorded
        explorer.append(side.startup.repeats[0]["ready_s"])
    return floor, explorer


def report(title: str, floor_label: str, floor: list[float], explorer: list[float]) -> bool:
    """Both medians with their range, and the verdict; whether the target was met."""
    f, e = statistics.median(floor), statistics.median(explorer)
    print(title)
    width = max(len(floor_label), len("explorer (ready_s)")) + 1
    for label, values, median in ((floor_label, floor, f), ("explorer (ready_s)", explorer, e)):
        low, high = min(values) * 1000, max(values) * 1000
        print(f"  {label + ':':<{width}} median {median * 1000:.0f} ms (min {low:.0f}, max {high:.0f})")
    passed, line = verdict(e / f)
    print(f"  {line}")
    return passed


def one_side(side: str, description: str, floor_label: str, floor_of: Callable[[Any, Any], Callable[[], float]]) -> int:
    """A benchmark of one side against its floor: --rounds and --scenario (a Redis one), the side
    checked and prepared, `floor_of(artifact, scenario)` the floor's one start, its exit status."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", default="redis")
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    if scen.workload.ready.kind != "redis":
        parser.error("the floor speaks Redis PING only: use a redis scenario")
    backend = backend_for(side)
    try:
        backend.check()
    except BackendUnavailable as exc:
        print(f"{side}: not measured ({exc})")
        return 1
    artifact = backend.prepare(scen)
    floor, explorer = alternate(backend, scen, artifact, args.rounds, floor_of(artifact, scen))
    title = f"{backend.side.title} start-to-ready, {args.rounds} rounds, scenario {scen.name}"
    return 0 if report(title, floor_label, floor, explorer) else 1
