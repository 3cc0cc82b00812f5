"""The userns side's start-to-ready against its bare floor, in one run: `podman run` by hand.

The floor is what a user types: `podman run -d --userns=auto --runtime runc` with the same
ulimits, no-new-privileges and a port published on 127.0.0.1, then a bare PING loop on that
port until redis answers. explorer's figure is its own `ready_s` (create -> PONG) from
lifecycle.measure, through Podman's API service. Rounds alternate floor and explorer so machine
noise hits both alike. Target: explorer within 1.05x of the floor. Exits 1 when it misses.

    python benchmarks/userns_startup.py [--rounds N] [--scenario redis]
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from startup_floor import one_side, pong_after, verdict  # beside this file

from explorer.engines.podman import NPROC, RUNTIME, ulimits

SIDE = "userns"


__all__ = ["main", "verdict"]  # verdict: what this benchmark exits by (tests/unit/test_bench_verdicts.py)


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
        return pong_after(host_port, t0)
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", container], capture_output=True, check=False, timeout=60)


def main() -> int:
    return one_side(
        SIDE,
        __doc__ or "",
        "bare floor (podman run + PING loop)",
        lambda artifact, scen: lambda: by_hand(artifact.image_id or artifact.ref, scen.workload.port),
    )


if __name__ == "__main__":
    sys.exit(main())
