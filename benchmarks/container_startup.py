"""Container start-to-ready, for every container side Docker runs (runc, gVisor): explorer's measurement
against a bare floor, in one run.

The floor is the docker SDK alone: create + start with the same options and the same OCI
runtime (runc, or runsc for gVisor), then a bare PING loop on the published port. explorer's
figure is its own `ready_s` (create -> PONG) from lifecycle.measure. Rounds alternate floor and
explorer so machine noise hits both alike. Target: explorer within 1.05x of the floor, per side.
Exits 1 when a side misses it.

    python benchmarks/container_startup.py [--rounds N] [--scenario redis] [--sides runc,gvisor]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time

import docker

from explorer import lifecycle, readiness, scenario, sides
from explorer.backends import backend_for
from explorer.dockerd import docker_client
from explorer.errors import BackendUnavailable

TARGET = 1.05


def verdict(ratio: float, target: float = TARGET) -> tuple[bool, str]:
    """Whether explorer's start-to-ready is within `target` times the floor's, and the line that
    says so: the exit status follows it, so `make bench` fails where a printed ratio misses."""
    passed = ratio <= target
    return passed, f"ratio explorer/floor: {ratio:.2f}x (target <= {target:.2f}x: {'ok' if passed else 'MISSED'})"


def bare_start_to_ready(client: docker.DockerClient, image: str, port: int, runtime: str | None) -> float:
    """create + start + PING loop with the docker SDK and a socket, nothing of explorer's."""
    t0 = time.monotonic()
    container = client.containers.create(
        image,
        ports={f"{port}/tcp": ("127.0.0.1", None)},
        labels={"io.explorer.managed": "true"},
        security_opt=["no-new-privileges"],
        runtime=runtime,
        detach=True,
    )
    try:
        container.start()
        container.reload()
        host_port = int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])
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
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", default="redis")
    parser.add_argument("--sides", default=",".join(sides.of_kind("container")))
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    if scen.workload.ready.kind != "redis":
        parser.error("the bare floor speaks Redis PING only: use a redis scenario")
    passed = True
    for name in sides.parse(args.sides) or ():
        backend = backend_for(name)
        # another engine's floor is its own CLI (benchmarks/userns_startup.py, nspawn_startup.py)
        if backend.name != "docker":
            print(f"{name}: not measured here (engine {backend.name}, not Docker)")
            continue
        try:
            backend.check()
        except BackendUnavailable as exc:
            print(f"{name}: not measured ({exc})")
            continue
        passed = bench_side(backend, scen, args.rounds) and passed
    return 0 if passed else 1


def bench_side(backend, scen: scenario.Scenario, rounds: int) -> bool:
    """The side's floor and explorer's figure, alternating; whether explorer met its target."""
    artifact = backend.prepare(scen)
    runtime, client = backend.check()["runtime"], docker_client()
    floor, explorer = [], []
    bare_start_to_ready(client, artifact.ref, scen.workload.port, runtime)  # warm-up, not counted
    for _ in range(rounds):
        floor.append(bare_start_to_ready(client, artifact.ref, scen.workload.port, runtime))
        side = lifecycle.measure(backend, scen, artifact, 1, lifecycle.new_run_id(), lambda message: None)
        explorer.append(side["startup"]["repeats"][0]["ready_s"])
    f, e = statistics.median(floor), statistics.median(explorer)
    print(f"{backend.side.title} start-to-ready, {rounds} rounds, scenario {scen.name}, runtime {runtime or 'default'}")
    print(
        f"  bare floor (docker SDK + PING loop): median {f * 1000:.0f} ms "
        f"(min {min(floor) * 1000:.0f}, max {max(floor) * 1000:.0f})"
    )
    print(
        f"  explorer (ready_s):                  median {e * 1000:.0f} ms "
        f"(min {min(explorer) * 1000:.0f}, max {max(explorer) * 1000:.0f})"
    )
    passed, line = verdict(e / f)
    print(f"  {line}")
    return passed


if __name__ == "__main__":
    sys.exit(main())
