"""A request/response load loop, run as its own process (so that its CPU is the client's and it
can run inside the native reference's network namespace):

    python -m explorer.load.loop KIND PARAMS_JSON HOST PORT SECONDS

prints one JSON line: {ops, seconds, ops_s, p50_ms, p99_ms, detail}. One connection, one
request at a time, for SECONDS; every latency kept to take the percentiles exactly.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def line_loop(params: dict[str, Any], host: str, port: int) -> Callable[[], None]:
    sock = socket.create_connection((host, port), timeout=5)
    request, expect = params["send"].encode(), params.get("expect", "")
    reader = sock.makefile("rb")

    def once() -> None:
        sock.sendall(request)
        line = reader.readline(4096)
        if not line or (expect and expect not in line.decode("utf-8", "replace")):
            raise ConnectionError(f"the answer was {line[:60]!r}")

    return once


def mongo_loop(params: dict[str, Any], host: str, port: int) -> Callable[[], None]:
    import pymongo  # ~180 ms to import: only this loop needs it

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        host, port, directConnection=True, serverSelectionTimeoutMS=5000
    )
    collection = client["explorer"]["load"]
    counter = iter(range(1 << 62))

    def once() -> None:
        key = next(counter)
        collection.insert_one({"_id": key, "value": "x" * 16})
        if collection.find_one({"_id": key}) is None:
            raise ConnectionError(f"document {key} was not found after its insert")

    return once


LOOPS = {"line": line_loop, "mongodb": mongo_loop}


def run(kind: str, params: dict[str, Any], host: str, port: int, seconds: float) -> dict[str, Any]:
    once = LOOPS[kind](params, host, port)
    latencies: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        begin = time.perf_counter()
        once()
        latencies.append(time.perf_counter() - begin)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "ops": len(latencies),
        "seconds": elapsed,
        "ops_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "detail": {},
    }


def main(argv: list[str]) -> int:
    kind, params, host, port, seconds = argv[0], json.loads(argv[1]), argv[2], int(argv[3]), float(argv[4])
    try:
        print(json.dumps(run(kind, params, host, port, seconds)))
    except Exception as exc:  # noqa: BLE001 - the child reports whatever ended it, and its parent says so
        print(f"the {kind} loop failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
