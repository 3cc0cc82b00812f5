"""Container start-to-ready: explorer's measurement against a bare floor, in one run.

The floor is the docker SDK alone: create + start with the same options, then a bare PING
loop on the published port. explorer's figure is its own `ready_s` (create -> PONG) from
runner.measure. Rounds alternate floor and explorer so machine noise hits both alike.
Target: explorer within 1.10x of the floor.

    python benchmarks/container_startup.py [--rounds N] [--scenario redis]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time

import docker

from explorer import runner, scenario
from explorer.backends.docker import DockerBackend


def bare_start_to_ready(client: docker.DockerClient, image: str, port: int) -> float:
    """create + start + PING loop with the docker SDK and a socket, nothing of explorer's."""
    t0 = time.monotonic()
    container = client.containers.create(
        image, ports={f"{port}/tcp": ("127.0.0.1", None)}, labels={"io.explorer.managed": "true"},
        security_opt=["no-new-privileges"], detach=True,
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
            time.sleep(0.05)
    finally:
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", default="redis")
    args = parser.parse_args()
    scen = scenario.load(args.scenario)
    if scen.workload.ready.kind != "redis":
        parser.error("the bare floor speaks Redis PING only: use a redis scenario")
    backend = DockerBackend()
    backend.check()
    artifact = backend.prepare(scen)
    floor, explorer = [], []
    bare_start_to_ready(backend.client, artifact.ref, scen.workload.port)  # warm-up, not counted
    for _ in range(args.rounds):
        floor.append(bare_start_to_ready(backend.client, artifact.ref, scen.workload.port))
        side = runner.measure(backend, scen, artifact, 1, runner.new_run_id(), lambda message: None)
        explorer.append(side["startup"]["repeats"][0]["ready_s"])
    f, e = statistics.median(floor), statistics.median(explorer)
    print(f"container start-to-ready, {args.rounds} rounds, scenario {scen.name}")
    print(f"  bare floor (docker SDK + PING loop): median {f * 1000:.0f} ms "
          f"(min {min(floor) * 1000:.0f}, max {max(floor) * 1000:.0f})")
    print(f"  explorer (ready_s):                  median {e * 1000:.0f} ms "
          f"(min {min(explorer) * 1000:.0f}, max {max(explorer) * 1000:.0f})")
    print(f"  ratio explorer/floor: {e / f:.2f}x (target <= 1.10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
