"""The userns side's start-to-ready against its bare floor, in one run: `podman run` by hand.

The floor is what a user types: `podman run -d --userns=auto --runtime runc` with the same
ulimits, no-new-privileges and a port published on 127.0.0.1, then a bare PING loop on that
port until redis answers. explorer's figure is its own `ready_s` (create -> PONG) from
lifecycle.measure, through Podman's API service. Rounds alternate floor and explorer so machine
noise hits both alike. Target: explorer within 1.05x of the floor. Exits 1 when it misses.

    python benchmarks/userns_startup.py [--rounds N] [--scenario redis]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

from explorer import lifecycle, readiness, scenario
from explorer.backends import backend_for
from explorer.engines.podman import NPROC, RUNTIME, ulimits
from explorer.errors import BackendUnavailable

TARGET = 1.05
SIDE = "userns"


def verdict(ratio: float, target: float = TARGET) -> tuple[bool, str]:
    """Whether explorer's start-to-ready is within `target` times the floor's, and the line saying so."""
    passed = ratio <= target
    return passed, f"ratio explorer/floor: {ratio:.2f}x (target <= {target:.2f}x: {'ok' if passed else 'MISSED'})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def by_hand(image_id: str, port: int) -> float:
    """`podman run -d` as a user types it, then a PING loop on the published port; removed after."""
    host_port, nofile = free_port(), ulimits()[0]["Hard"]
    argv = [
        "podman", "run", "-d", "--userns=auto", "--runtime", RUNTIME,
        "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={NPROC}:{NPROC}",
        "--security-opt", "no-new-privileges", "--label", "io.explorer.managed=true",
        "-p", f"127.0.0.1:{host_port}:{port}", image_id,
    ]  # fmt: skip
    t0 = time.monotonic()
    container = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", host_port), timeout=1) as sock:
                    sock.settimeout(1)
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(readiness.INTERVAL_S)  # explorer's own resolution
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", container], capture_output=True, check=False, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", default="redis")
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    if scen.workload.ready.kind != "redis":
        parser.error("the bare floor speaks Redis PING only: use a redis scenario")
    backend = backend_for(SIDE)
    try:
        backend.check()
    except BackendUnavailable as exc:
        print(f"{SIDE}: not measured ({exc})")
        return 1
    artifact = backend.prepare(scen)
    image_id, port = artifact.facts["image_id"], scen.workload.port
    floor, explorer = [], []
    by_hand(image_id, port)  # warm-up, not counted
    for _ in range(args.rounds):
        floor.append(by_hand(image_id, port))
        side = lifecycle.measure(backend, scen, artifact, 1, lifecycle.new_run_id(), lambda message: None)
        explorer.append(side["startup"]["repeats"][0]["ready_s"])
    f, e = statistics.median(floor), statistics.median(explorer)
    print(f"{backend.side.title} start-to-ready, {args.rounds} rounds, scenario {scen.name}")
    print(
        f"  bare floor (podman run + PING loop): median {f * 1000:.0f} ms (min {min(floor) * 1000:.0f}, max {max(floor) * 1000:.0f})"
    )
    print(
        f"  explorer (ready_s):                  median {e * 1000:.0f} ms (min {min(explorer) * 1000:.0f}, max {max(explorer) * 1000:.0f})"
    )
    passed, line = verdict(e / f)
    print(f"  {line}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
