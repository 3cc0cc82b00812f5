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
import sys
import time

import docker
from startup_floor import alternate, pong_after, report, verdict  # beside this file

from explorer import scenario, sides
from explorer.backends import backend_for
from explorer.dockerd import docker_client
from explorer.errors import BackendUnavailable

__all__ = ["main", "verdict"]  # verdict: what this benchmark exits by (tests/unit/test_bench_verdicts.py)


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
        return pong_after(host_port, t0)
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
    floor, explorer = alternate(
        backend, scen, artifact, rounds, lambda: bare_start_to_ready(client, artifact.ref, scen.workload.port, runtime)
    )
    title = (
        f"{backend.side.title} start-to-ready, {rounds} rounds, scenario {scen.name}, runtime {runtime or 'default'}"
    )
    return report(title, "bare floor (docker SDK + PING loop)", floor, explorer)


if __name__ == "__main__":
    sys.exit(main())
