"""The load clients: the field's own tools, the same client with the same parameters against
every side (and the native reference), each a subprocess so that its own CPU is counted apart
and it can run inside the native reference's network namespace.

A client is a small dataclass whose fields are its parameters (PARAMS: their JSON schemas,
read by the scenario schema); it says which tool it needs (and the package that has it),
builds the argument list of a round of `seconds`, and reads the figures of a round from what
the tool printed: operations, their rate, and the latency percentiles the tool reports.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import statistics
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from explorer.errors import ExplorerError
from explorer.loadspec import PARAMS as LOAD_PARAMS
from explorer.loadspec import default


class LoadToolMissing(ExplorerError):
    """A load client's tool is not installed: the load is skipped with this reason."""


@dataclass
class Client:
    KIND: ClassVar[str] = ""
    TOOL: ClassVar[str] = ""  # the executable
    PACKAGE: ClassVar[str] = ""  # the Debian package that has it
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = {}
    IN_ROOTFS: ClassVar[bool] = False  # run from the workload's own root filesystem (chroot), not the host

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def inside_tool(self) -> list[str] | None:
        """The argv prefix that runs the tool inside a guest, found there by its PATH (None: the
        client cannot run inside a guest)."""
        return [self.TOOL]

    def tool(self, rootfs: Path | None = None) -> list[str]:
        """The argv prefix that runs the tool; LoadToolMissing saying which package has it."""
        path = shutil.which(self.TOOL)
        if path is None:
            raise LoadToolMissing(
                f"the {self.KIND} load needs {self.TOOL}, which is not installed",
                hint=f"apt-get install {self.PACKAGE} (scripts/setup-host does)",
            )
        return [path]

    def init_argv(self, tool: list[str], host: str, port: int) -> list[str] | None:
        """What prepares the workload for the load, once per side (None: nothing)."""
        return None

    def initialised(self, out: str) -> Client:
        """The client for the rounds, given what its init printed (fio: buffered where the side
        refused O_DIRECT); most clients stay as they are."""
        return self

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        raise NotImplementedError

    def parse(self, out: str) -> dict[str, Any]:
        """{ops, seconds, ops_s, p50_ms, p99_ms (None where the tool does not say), detail}."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.TOOL} " + " ".join(f"{k}={v}" for k, v in self.params().items())

    def as_run(self, seconds: float) -> dict[str, Any]:
        """What the result records of the client as it ran beyond its argv (fio: the job file)."""
        return {}


@dataclass
class RedisBenchmark(Client):
    """redis-benchmark (Debian's redis-tools): SET and GET, a request count sized to the round
    from the side's own first calibration batch, so that a round lasts about as long on a side
    20x slower; clients, pipeline and value size are fixed."""

    KIND: ClassVar[str] = "redis"
    TOOL: ClassVar[str] = "redis-benchmark"
    PACKAGE: ClassVar[str] = "redis-tools"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = LOAD_PARAMS["redis"]
    CALIBRATION: ClassVar[int] = 2000  # requests per test of the batch that sizes a side's rounds
    clients: int = default("redis", "clients")
    pipeline: int = default("redis", "pipeline")
    data_bytes: int = default("redis", "data_bytes")
    requests: int = field(default=CALIBRATION, repr=False, compare=False)

    def params(self) -> dict[str, Any]:
        return {"clients": self.clients, "pipeline": self.pipeline, "data_bytes": self.data_bytes}

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        return [
            *tool,
            "-h",
            host,
            "-p",
            str(port),
            "-c",
            str(self.clients),
            "-P",
            str(self.pipeline),
            "-d",
            str(self.data_bytes),
            "-n",
            str(self.requests),
            "-t",
            "set,get",
            "--csv",
        ]

    def parse(self, out: str) -> dict[str, Any]:
        rows = {r["test"]: r for r in csv.DictReader(io.StringIO(out)) if r.get("test")}
        if not rows:
            raise ValueError(f"redis-benchmark printed no results: {out.strip()[-200:]!r}")
        seconds = sum(self.requests / float(r["rps"]) for r in rows.values())
        ops = self.requests * len(rows)
        return {
            "ops": ops,
            "seconds": seconds,
            "ops_s": ops / seconds,
            "p50_ms": statistics.median(float(r["p50_latency_ms"]) for r in rows.values()),
            "p99_ms": max(float(r["p99_latency_ms"]) for r in rows.values()),
            "detail": {test: float(r["rps"]) for test, r in rows.items()},
        }

    def sized(self, ops_s: float, seconds: float) -> RedisBenchmark:
        """The same client with a request count a side at `ops_s` serves in `seconds` (both tests)."""
        return RedisBenchmark(
            self.clients, self.pipeline, self.data_bytes, max(self.CALIBRATION, int(ops_s * seconds / 2))
        )


@dataclass
class PgBench(Client):
    """pgbench from the workload's own root filesystem (Debian ships it with the server, so the
    host has none to offer without a server of its own): initialised once per side at a fixed
    scale, then select-only transactions for the round's seconds."""

    KIND: ClassVar[str] = "postgres"
    TOOL: ClassVar[str] = "pgbench"
    PACKAGE: ClassVar[str] = "postgresql (in the workload's image)"
    IN_ROOTFS: ClassVar[bool] = True
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = LOAD_PARAMS["postgres"]
    scale: int = default("postgres", "scale")
    clients: int = default("postgres", "clients")
    user: str = default("postgres", "user")

    def tool(self, rootfs: Path | None = None) -> list[str]:
        found = sorted(rootfs.glob("usr/lib/postgresql/*/bin/pgbench")) if rootfs else []
        if not found:
            raise LoadToolMissing(
                f"the {self.KIND} load needs pgbench in the workload's image, which has none",
                hint="an image with PostgreSQL's server package has it",
            )
        assert rootfs is not None  # found is empty without a rootfs
        return ["chroot", str(rootfs), "/" + str(found[-1].relative_to(rootfs))]

    def init_argv(self, tool: list[str], host: str, port: int) -> list[str]:
        return [*tool, "-i", "-q", "-s", str(self.scale), "-h", host, "-p", str(port), "-U", self.user, "postgres"]

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        return [
            *tool,
            "-S",
            "-n",
            "-c",
            str(self.clients),
            "-j",
            "1",
            "-T",
            str(max(1, round(seconds))),
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            self.user,
            "postgres",
        ]

    def parse(self, out: str) -> dict[str, Any]:
        found = {
            key: re.search(pattern, out)
            for key, pattern in (
                ("tps", r"tps = ([\d.]+) \(without initial connection time\)"),
                ("done", r"number of transactions actually processed: (\d+)"),
                ("latency", r"latency average = ([\d.]+) ms"),
                ("seconds", r"duration: (\d+) s"),
            )
        }
        if not all(found.values()):
            raise ValueError(f"pgbench printed no results: {out.strip()[-200:]!r}")
        matched = {key: match for key, match in found.items() if match is not None}  # all of them
        tps = float(matched["tps"][1])
        return {
            "ops": int(matched["done"][1]),
            "seconds": int(matched["done"][1]) / tps,
            "ops_s": tps,
            "p50_ms": None,
            "p99_ms": None,
            "latency_avg_ms": float(matched["latency"][1]),
            "detail": {},
        }


@dataclass
class Wrk(Client):
    """wrk (Debian's wrk): GET of one path over a fixed number of connections for the round."""

    KIND: ClassVar[str] = "http"
    TOOL: ClassVar[str] = "wrk"
    PACKAGE: ClassVar[str] = "wrk"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = LOAD_PARAMS["http"]
    connections: int = default("http", "connections")
    path: str = default("http", "path")

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        return [
            *tool,
            "-t",
            "1",
            "-c",
            str(self.connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--latency",
            f"http://{host}:{port}{self.path}",
        ]

    def parse(self, out: str) -> dict[str, Any]:
        done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if not done or not rate:
            raise ValueError(f"wrk printed no results: {out.strip()[-200:]!r}")
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[done[3]]
        percentiles = {
            p: _ms(v, unit) for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        }
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {
            "ops": int(done[1]),
            "seconds": float(done[2]) * scale,
            "ops_s": float(rate[1]),
            "p50_ms": percentiles.get("50"),
            "p99_ms": percentiles.get("99"),
            "detail": {"non_2xx_3xx": int(errors[1]) if errors else 0},
        }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class PythonLoop(Client):
    """A request/response loop in a Python child process (explorer/load/loop.py)."""

    TOOL: ClassVar[str] = sys.executable

    def tool(self, rootfs: Path | None = None) -> list[str]:
        return [sys.executable, "-m", "explorer.load.loop"]

    def inside_tool(self) -> list[str] | None:
        return None  # explorer's own loop, which no guest has

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        return [*tool, self.KIND, json.dumps(self.params()), host, str(port), str(seconds)]

    def parse(self, out: str) -> dict[str, Any]:
        return json.loads(out.strip().splitlines()[-1])

    def describe(self) -> str:
        return f"explorer's {self.KIND} loop " + " ".join(f"{k}={v!r}" for k, v in self.params().items())


@dataclass
class MongoLoop(PythonLoop):
    """pymongo: one client inserting a small document and finding it again, in turns."""

    KIND: ClassVar[str] = "mongodb"


@dataclass
class LineLoop(PythonLoop):
    """A line protocol: send a request line, read the answer line (memcached's `version`)."""

    KIND: ClassVar[str] = "line"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = LOAD_PARAMS["line"]
    send: str = default("line", "send")
    expect: str = default("line", "expect")
