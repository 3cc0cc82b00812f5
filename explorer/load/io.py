"""The standard I/O load: fio in client/server mode, the same fixed job on every side.

The side runs `fio --server` (the fio scenario's workload); the host's fio sends it a job file
over 127.0.0.1 and reads the results back as JSON. The jobs run where the server runs, on the
side's own storage, with their file in the server's working directory: the container's
writable layer, the VM's disk, the native reference's temporary copy of the image's root.

The job: four jobs one after another (stonewall), each a quarter of the round, on one file of
a fixed size laid out once per side before the rounds: 4 KiB random read, 4 KiB random write,
1 MiB sequential read, 1 MiB sequential write; psync (one synchronous call per I/O), queue
depth 1, O_DIRECT. Where a side refuses O_DIRECT (EINVAL when fio opens its file with it),
that side runs the same jobs buffered, and says so: its reads may then come from a page cache
and its writes end in one, so its figures are the cache's more than its storage path's.

A round's figures: every job's IOPS, bandwidth and completion-latency percentiles (fio's
clat); `ops` is the I/Os of all four jobs, so a round's ops/s and the host's system calls
per operation are over the mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from explorer.cache import cache_dir
from explorer.load.clients import Client
from explorer.loadspec import PARAMS as LOAD_PARAMS
from explorer.loadspec import default

DATA_FILE = "explorer-fio.data"  # in the server's working directory, inside the side
# name, fio's rw, block size: run in this order
JOBS = (
    ("randread-4k", "randread", "4k"),
    ("randwrite-4k", "randwrite", "4k"),
    ("read-1m", "read", "1m"),
    ("write-1m", "write", "1m"),
)
MIN_JOB_MS = 100
EINVAL = 22
PAGE_CACHE_EFFECT = (
    "buffered I/O: reads may be served from the page cache and writes end in it, not on the disk, "
    "within the round; the figures are the cache's more than the storage path's"
)


def job_file(seconds: float, size_mib: int, direct: bool) -> str:
    """The job file of a round of `seconds` (each job a quarter of it)."""
    job_ms = max(MIN_JOB_MS, round(seconds * 1000 / len(JOBS)))
    lines = [
        "; explorer's standard I/O load: four jobs one after another, each for a quarter of the round",
        "[global]",
        "ioengine=psync",
        "iodepth=1",
        f"direct={int(direct)}",
        f"filename={DATA_FILE}",
        f"size={size_mib}m",
        "time_based=1",
        f"runtime={job_ms}ms",
        "stonewall",
    ]
    for name, rw, bs in JOBS:
        lines += ["", f"[{name}]", f"rw={rw}", f"bs={bs}"]
    return "\n".join(lines) + "\n"


def init_job_file(size_mib: int) -> str:
    """Once per side, before the rounds: lay the file out (fio writes it in full, buffered), then
    read one block of it with O_DIRECT: the open that a side refusing O_DIRECT fails with EINVAL."""
    return (
        "\n".join(
            [
                "; explorer's standard I/O load, once per side: lay out the file, then one O_DIRECT read",
                "[global]",
                "ioengine=psync",
                f"filename={DATA_FILE}",
                f"size={size_mib}m",
                "",
                "[layout-and-o-direct]",
                "rw=read",
                "bs=4k",
                "direct=1",
                "io_size=4k",
            ]
        )
        + "\n"
    )


def saved(text: str) -> Path:
    """The job file on the host, where the client reads it (and anyone can, to run it by hand):
    named by its content in the cache, written once."""
    path = cache_dir("fio") / f"job-{hashlib.sha256(text.encode()).hexdigest()[:12]}.fio"
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def results(out: str) -> dict[str, Any]:
    """fio's JSON, from what the client printed: its own lines first (a blank one; where a job
    failed, the server's messages, each line prefixed with the server's host name)."""
    start = re.search(r"^\{", out, re.MULTILINE)
    if start is None:
        raise ValueError(f"fio printed no JSON: {out.strip()[-200:]!r}")
    return json.loads(out[start.start() :])


def job_figures(job: dict[str, Any], rw: str, bs: str) -> dict[str, Any]:
    """One job of fio's client_stats (its rw and bs as the job file set them): the direction
    that did the I/O; latencies are fio's completion latencies (clat), in ms."""
    part = job["read" if "read" in rw else "write"]
    pct = part["clat_ns"].get("percentile", {})
    return {
        "rw": rw,
        "bs": bs,
        "ios": part["total_ios"],
        "runtime_ms": part["runtime"],
        "iops": part["iops"],
        "bw_kib_s": part["bw"],
        "p50_ms": pct["50.000000"] / 1e6 if "50.000000" in pct else None,
        "p99_ms": pct["99.000000"] / 1e6 if "99.000000" in pct else None,
    }


def refusal(out: str, err: str) -> str | None:
    """Why a side refused O_DIRECT, read from what fio's init job printed (None: it did not
    refuse it): every job failed with EINVAL, and fio said the destination lacks O_DIRECT."""
    try:
        jobs = [j for j in results(out).get("client_stats", []) if j.get("jobname") != "All clients"]
    except ValueError:
        return None
    if not jobs or any(j.get("error") != EINVAL for j in jobs):
        return None
    lines = (out + "\n" + err).splitlines()  # the client prints the server's messages on stdout
    said = [
        line.split("fio: ", 1)[-1] for line in lines if "fio: " in line and ("O_DIRECT" in line or "direct=1" in line)
    ]
    if not said:
        return None
    return f"EINVAL (22) opening its file with O_DIRECT; fio: {'; '.join(dict.fromkeys(said))}"


@dataclass
class Fio(Client):
    """fio's client against `fio --server`: the fixed job (module docstring), O_DIRECT unless
    the side refuses it (found by the init job, which lays the file out)."""

    KIND: ClassVar[str] = "fio"
    TOOL: ClassVar[str] = "fio"
    PACKAGE: ClassVar[str] = "fio"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = LOAD_PARAMS["fio"]
    size_mib: int = default("fio", "size_mib")
    direct: bool = default("fio", "direct")
    refused: str | None = field(default=None, repr=False, compare=False)  # why the side refused O_DIRECT

    def params(self) -> dict[str, Any]:
        return {"size_mib": self.size_mib, "direct": self.direct}

    def command(self, tool: list[str], host: str, port: int, job: Path) -> list[str]:
        # the output format after the job file: before it, the client prints each job's text header too
        return [*tool, f"--client={host},{port}", str(job), "--output-format=json"]

    def init_argv(self, tool: list[str], host: str, port: int) -> list[str]:
        """Through explorer's wrapper (explorer/load/io_init.py), which turns an O_DIRECT refusal
        into an answer rather than a failure; the fio command line follows its `--`."""
        job = saved(init_job_file(self.size_mib))
        return [sys.executable, "-m", "explorer.load.io_init", "--", *self.command(tool, host, port, job)]

    def initialised(self, out: str) -> Fio:
        """The init job's answer: O_DIRECT it is, or buffered, with the side's reason."""
        answer = json.loads(out.strip().splitlines()[-1])
        if answer.get("direct", True) or not self.direct:
            return self
        return Fio(self.size_mib, direct=False, refused=answer["refused"])

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        return self.command(tool, host, port, saved(job_file(seconds, self.size_mib, self.direct)))

    def parse(self, out: str) -> dict[str, Any]:
        stats = {job.get("jobname"): job for job in results(out).get("client_stats", [])}
        missing = [name for name, _, _ in JOBS if name not in stats]
        if missing:
            raise ValueError(f"fio's results have no job {', '.join(missing)}")
        failed = {name: stats[name]["error"] for name, _, _ in JOBS if stats[name].get("error")}
        if failed:
            raise ValueError(f"fio jobs failed: {', '.join(f'{n} (error {e})' for n, e in failed.items())}")
        jobs = {name: job_figures(stats[name], rw, bs) for name, rw, bs in JOBS}
        ops = sum(job["ios"] for job in jobs.values())
        seconds = sum(job["runtime_ms"] for job in jobs.values()) / 1000
        return {
            "ops": ops,
            "seconds": seconds,
            "ops_s": ops / seconds if seconds else 0.0,
            "p50_ms": None,  # per job, in detail: one latency over 4 KiB and 1 MiB I/Os says nothing
            "p99_ms": None,
            "detail": {"direct": self.direct, "jobs": jobs},
        }

    def as_run(self, seconds: float) -> dict[str, Any]:
        """The job file as run, and whether with O_DIRECT (and why not)."""
        return {
            "io": {
                "job_file": job_file(seconds, self.size_mib, self.direct),
                "init_job_file": init_job_file(self.size_mib),
                "direct": self.direct,
                "direct_refused": self.refused,
                "page_cache_effect": None if self.direct else PAGE_CACHE_EFFECT,
            }
        }
