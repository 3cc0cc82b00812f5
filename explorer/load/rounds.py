"""The load phase: the same client, the same parameters, the same round length against a
workload that is ready (a side's, or the native reference's), from the host, on every path
the side offers (its published port; its own network namespace; a VM's hostfwd).

A few measured rounds per path (operations per second, the client's latency percentiles, the
host CPU the workload's host processes spent, the client's own CPU apart: on a 2-core host they
compete), then one more round per path under the host's tracing (tracing perturbs throughput,
so its ops/s is never a measured round's; explorer/load/traced.py). Bounded in time: every
client process has a deadline and runs in a process group of its own, ended whole by a timeout
or an interrupt. Where the phase's time goes is recorded with its figures (`phase_split`).
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from explorer import interrupts
from explorer.errors import ExplorerError
from explorer.load import trace, traced
from explorer.load.clients import Client, LoadToolMissing, RedisBenchmark
from explorer.load.endpoint import Endpoint, Settings, Split
from explorer.model import NetPath

DEATH_SETTLE_S = 3.0  # how long the engine may take to see a workload dead that a client saw die
CLIENT_GRACE_S = 30.0  # a client may take this much longer than its round before it is ended
DISCOVERY_REQUESTS = 200  # redis-benchmark's requests per test in a path's discovery run (the traced part's)
DISCOVERY_S = 1.0  # a timed client's seconds in a discovery run


class LoadFailed(ExplorerError):
    """The load could not run to the end: the client failed, or the workload died under it."""


class PathGone(LoadFailed):
    """The path can no longer reach a workload that still runs (its network namespace is gone):
    the path is not measured, with this reason."""


def measure(client: Client, endpoint: Endpoint, settings: Settings, path: NetPath | None = None) -> dict[str, Any]:
    """One path's load (the native reference's; a test's): measure_paths with that path."""
    path = path or NetPath("port", f"{endpoint.host}:{endpoint.port}", endpoint.port, tuple(endpoint.prefix))
    return measure_paths(client, [(path, endpoint)], settings)


def measure_paths(client: Client, paths: list[tuple[NetPath, Endpoint | None]], settings: Settings) -> dict[str, Any]:
    """The load's figures on every path (an endpoint None: the path cannot be measured, its
    `missing` says why): {client, params, path: the first path's name, the first path's figures
    at the top (status: ok | skipped | failed | not measured, rounds, summary, traced), paths:
    {name: the path's description, endpoint, prefix and figures}, phase_s, phase_split}.

    Each path is calibrated on its own (a request count sized to its own rate, so that its
    rounds last as long: the paths of one side differ up to ~3x); the measured rounds take the
    paths in turn, round by round, so that the host's noise falls on each alike; then the
    traced part (explorer/load/traced.py) counts each path once, sharing one idle window."""
    split = Split()
    out: dict[str, Any] = {
        "client": client.describe(),
        "kind": client.KIND,
        "params": client.params(),
        "seconds_per_round": settings.seconds,
    }
    if paths and paths[0][1] is not None and paths[0][1].storage is not None:
        out["storage"] = paths[0][1].storage
    found = {path.name: {**path.meta(), "status": "not measured", "reason": path.missing} for path, _ in paths}
    live = {path.name: endpoint for path, endpoint in paths if endpoint is not None and path.missing is None}
    for name in [n for n, e in live.items() if e.inside and client.inside_tool() is None]:
        found[name]["reason"] = f"the {client.KIND} client is explorer's own loop: no guest has it"
        live.pop(name)
    try:
        if live:
            run = PathsRun(client, client.tool(next(iter(live.values())).rootfs), settings, split, live, found)
            run.run()
            out.update(run.client.as_run(settings.seconds))
    except LoadToolMissing as exc:
        for name in live:
            found[name].update(status="skipped", reason=f"{exc} ({exc.hint})")
    first = paths[0][0].name
    out.update(path=first, **found[first], paths=found)
    out["phase_split"] = split.document()
    out["phase_s"] = out["phase_split"]["total_s"]
    return out


@dataclass
class PathsRun:
    """The live paths of one load phase, measured stage by stage into `found`; a path whose
    client fails leaves `live` with its reason, the others go on."""

    client: Client
    tool: list[str]
    settings: Settings
    split: Split
    live: dict[str, Endpoint]
    found: dict[str, dict[str, Any]]
    sized: dict[str, Client] = field(default_factory=dict)
    init: list[str] | None = None  # the client's preparation as run (pgbench -i, fio's layout)

    def run(self) -> None:
        self.prepare()
        for name in list(self.live):
            with self.split.part("calibration_s"):
                self.guarded(name, functools.partial(self.calibrate, name))
        for name, endpoint in self.live.items():  # as run: anyone can run the client again by hand
            round_argv = self.sized[name].argv(self.tool_for(name), endpoint.host, endpoint.port, self.settings.seconds)
            self.found[name]["argv"] = {"init": self.init, "round": endpoint.prefix + round_argv}
        for name in self.live:
            self.found[name]["rounds"] = []
        for _ in range(self.settings.rounds):
            for name in list(self.live):
                self.guarded(name, functools.partial(self.measured_round, name))
        for name in self.live:
            self.found[name]["summary"] = summarize(self.found[name]["rounds"])
        self.traced_part()
        for name, endpoint in self.live.items():
            self.found[name]["status"] = "ok"
            self.found[name].pop("reason")
            # each role's seccomp filters, read with the workload idle, beside the calls it made
            traced_figures = self.found[name].get("traced") or {}
            self.found[name]["seccomp"] = trace.filters(endpoint.pids(), endpoint.kernel_roles, traced_figures)

    def tool_for(self, name: str) -> list[str]:
        """The host's tool, or for a path inside the guest the guest's own copy (by its PATH)."""
        inside = self.client.inside_tool() if self.live[name].inside else None
        return inside if inside is not None else self.tool

    def guarded(self, name: str, step: Callable[[], Any]) -> None:
        try:
            step()
        except PathGone as exc:
            self.found[name].update(status="not measured", reason=str(exc))
            self.live.pop(name)
        except LoadFailed as exc:
            self.fail([name], exc)

    def fail(self, names: list[str], exc: LoadFailed) -> None:
        for name in names:
            self.found[name].update(status="failed", reason=str(exc), logs=exc.hint)
            self.live.pop(name)

    def prepare(self) -> None:
        """The client's preparation (pgbench -i), once per side through its first path: the data
        lives in the server, whichever path reaches it; its failure fails every path."""
        first = next(iter(self.live.values()))
        argv = self.client.init_argv(self.tool, first.host, first.port)
        if argv is not None:
            self.init = first.prefix + argv
            try:
                with self.split.part("prepare_s"):
                    self.client = self.client.initialised(run_client(self.init, 600.0, first))
            except LoadFailed as exc:
                self.fail(list(self.live), exc)

    def calibrate(self, name: str) -> None:
        self.sized[name] = calibrated(
            self.client, self.tool_for(name), self.live[name], self.settings, self.found[name]
        )

    def measured_round(self, name: str) -> None:
        figures = one_round(self.sized[name], self.tool_for(name), self.live[name], self.settings, self.split)
        self.found[name]["rounds"].append(figures)
        sized = self.sized[name]
        if isinstance(sized, RedisBenchmark):  # the next round sized from the median rate so far
            rates = [r["ops_s"] for r in self.found[name]["rounds"]]
            rates += [batch["ops_s"] for batch in self.found[name].get("calibration", [])[-1:]]
            self.sized[name] = sized.sized(statistics.median(rates), self.settings.seconds)

    def traced_part(self) -> None:
        """Each live path's traced round (explorer/load/traced.py); a workload that died under
        it fails every path with its death."""
        counted = {
            name: _counted(self.sized[name], self.client, self.tool_for(name), endpoint, self.settings)
            for name, endpoint in self.live.items()
        }
        why = trace.unavailable() if self.settings.trace else "counting was not asked for"
        try:
            figures = traced.traced_rounds(counted, self.settings.seconds, why, self.split)
        except LoadFailed as exc:
            self.fail(list(self.live), exc)
            return
        for name, traced_figures in figures.items():
            self.found[name]["traced"] = traced_figures


def _counted(sized: Client, client: Client, tool: list[str], endpoint: Endpoint, settings: Settings) -> traced.Counted:
    """A path for the traced part: its round, and its brief discovery run."""

    def traced_run() -> dict[str, Any]:
        argv = endpoint.prefix + sized.argv(tool, endpoint.host, endpoint.port, settings.seconds)
        return {**parse(sized, run_client(argv, settings.seconds + CLIENT_GRACE_S, endpoint), endpoint), "argv": argv}

    def discovery_run() -> None:
        brief = replace(client, requests=DISCOVERY_REQUESTS) if isinstance(client, RedisBenchmark) else client
        argv = endpoint.prefix + brief.argv(tool, endpoint.host, endpoint.port, DISCOVERY_S)
        run_client(argv, DISCOVERY_S + CLIENT_GRACE_S, endpoint)

    return traced.Counted(endpoint, traced_run, discovery_run, lambda: died_or_not(endpoint))


def calibrated(
    client: Client, tool: list[str], endpoint: Endpoint, settings: Settings, record: dict[str, Any] | None = None
) -> Client:
    """redis-benchmark counts requests: a first batch says how many this path serves in a round.
    A batch that ends in under a quarter of a round is mostly connection setup, which made fast
    paths' rounds a third of their length: a second batch, sized from the first to a quarter of
    a round, says it then."""
    if not isinstance(client, RedisBenchmark):
        return client
    batches: list[dict[str, Any]] = []
    batch = client
    while True:
        argv = endpoint.prefix + batch.argv(tool, endpoint.host, endpoint.port, 0)
        figures = parse(batch, run_client(argv, 120, endpoint), endpoint)
        batches.append({"argv": argv, "ops_s": round(figures["ops_s"], 1), "seconds": round(figures["seconds"], 3)})
        if figures["seconds"] >= settings.seconds / 4 or len(batches) == 2:
            break
        batch = client.sized(figures["ops_s"], settings.seconds / 4)
    if record is not None:
        record["calibration"] = batches
    return client.sized(figures["ops_s"], settings.seconds)


def one_round(
    client: Client, tool: list[str], endpoint: Endpoint, settings: Settings, split: Split | None = None
) -> dict[str, Any]:
    split = split or Split()
    pids = endpoint.pids()
    before = cpu_by_role(pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, settings.seconds)
    with split.part("measured_rounds_s"):
        text = run_client(argv, settings.seconds + CLIENT_GRACE_S, endpoint)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # listed again after the round: processes the workload started in it (fio's job processes, not
    # yet reaped when the round ends) count whole; those it reaped are in their parent's children
    after = cpu_by_role({**pids, **endpoint.pids()})
    used = {role: round(seconds - before.get(role, 0.0), 4) for role, seconds in after.items()}
    figures = parse(client, text, endpoint)
    client_cpu = (after_children.ru_utime - children.ru_utime) + (after_children.ru_stime - children.ru_stime)
    host_cpu = sum(used.values())
    return {
        **figures,
        "host_cpu_s": round(host_cpu, 4),
        "host_cpu_by_role_s": used,
        "host_cpu_s_per_1k_ops": round(host_cpu / figures["ops"] * 1000, 5) if figures["ops"] else None,
        # inside a guest the client's CPU is the guest's (in the VMM's): what ran here only relayed it
        "client_cpu_s": None if endpoint.inside else round(client_cpu, 4),
        "argv": argv,
    }


def parse(client: Client, text: str, endpoint: Endpoint) -> dict[str, Any]:
    try:
        return client.parse(text)
    except (ValueError, KeyError, IndexError) as exc:
        raise LoadFailed(f"the {client.KIND} client's output could not be read: {exc}", hint=endpoint.logs()) from exc


def run_client(argv: list[str], timeout: float, endpoint: Endpoint) -> str:
    """The client, in a process group of its own, ended whole on a timeout or an interrupt.
    A group, not a session: a shell runs a typed command so, and a session of its own would
    also give the client a scheduling group of its own (the kernel's autogroup), which a
    client run by hand does not have (measured: +4.9% ops/s for redis-benchmark, within noise)."""
    with interrupts.deferred():  # a client started is a client recorded, to be stopped
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            process_group=0,
            stdin=subprocess.DEVNULL,
        )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_client(proc)
        died_or_not(endpoint)  # a client can hang on a server that died behind a proxy
        raise LoadFailed(
            f"{argv[len(endpoint.prefix)]} did not finish in {timeout:.0f} s", hint=endpoint.logs()
        ) from None
    except BaseException:
        with interrupts.deferred():  # an interrupt: no load client is left running
            stop_client(proc)
        raise
    if proc.returncode != 0:
        died_or_not(endpoint)
        gone = endpoint.gone()
        if gone:
            raise PathGone(gone, hint=endpoint.logs())
        raise LoadFailed(
            f"{' '.join(argv[len(endpoint.prefix) :][:3])} exited {proc.returncode}: {(err or out).strip()[-300:]}",
            hint=endpoint.logs(),
        )
    return out


def died_or_not(endpoint: Endpoint, settle_s: float = DEATH_SETTLE_S) -> None:
    """Raise LoadFailed naming the workload's death if it died; return if it is alive. The
    client sees a death first (its connection closes at once); the engine's state of the
    workload follows a little later, so it is asked a few times over `settle_s`."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            endpoint.alive()
        except ExplorerError as exc:
            raise LoadFailed(f"the workload died under the load: {exc}", hint=endpoint.logs()) from exc
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def stop_client(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def cpu_by_role(pids: dict[int, str]) -> dict[str, float]:
    """User + system CPU seconds so far of each process (all its threads, and the children it
    has reaped: a PostgreSQL backend forked and ended within the round), summed by role."""
    out: dict[str, float] = {}
    for pid, role in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[role] = out.get(role, 0.0) + times.user + times.system + times.children_user + times.children_system
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread over the measured rounds."""

    def spread(key: str) -> dict[str, float] | None:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}

    keys = ("ops_s", "p50_ms", "p99_ms", "latency_avg_ms", "host_cpu_s_per_1k_ops", "client_cpu_s")
    return {key: value for key in keys if (value := spread(key)) is not None}
