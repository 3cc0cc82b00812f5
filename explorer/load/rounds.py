"""The load phase: the same client, the same parameters, the same round length against a
workload that is ready (a side's, or the native reference's), from the host.

A few measured rounds (operations per second, the client's latency percentiles, the host CPU
the workload's host processes spent, the client's own CPU apart: on a 2-core host they compete),
then one more round under the host's tracing (tracing perturbs throughput, so its ops/s is
never a measured round's). Bounded in time: every client process has a deadline and runs in a
process group of its own, ended whole by a timeout or an interrupt.
"""

from __future__ import annotations

import os
import resource
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from explorer import interrupts
from explorer.errors import ExplorerError
from explorer.load import trace
from explorer.load.clients import Client, LoadToolMissing, RedisBenchmark

DEATH_SETTLE_S = 3.0  # how long the engine may take to see a workload dead that a client saw die
ATTACH_TRIES = 3  # listings of a side's processes before perf's failure to attach is an error
CLIENT_GRACE_S = 30.0  # a client may take this much longer than its round before it is ended


class LoadFailed(ExplorerError):
    """The load could not run to the end: the client failed, or the workload died under it."""


@dataclass(frozen=True)
class Settings:
    seconds: float = 2.0  # per round
    rounds: int = 3  # measured rounds, then one traced round
    trace: bool = True


@dataclass
class Endpoint:
    """Where the load goes and who serves it on the host."""

    host: str
    port: int
    pids: Callable[[], dict[int, str]]  # host PID -> role: the workload's processes, shim, VMM, proxy...
    alive: Callable[[], None]  # raises if the workload has died (a side's poll)
    logs: Callable[[], str]
    prefix: list[str] = field(default_factory=list)  # how a client reaches it (ip netns exec NAME)
    rootfs: Path | None = None  # the workload's own root filesystem, for a client that comes from it
    kvm_roles: frozenset[str] = frozenset()  # roles that run a KVM guest: their VM exits are counted too
    kernel_roles: frozenset[str] = frozenset({"workload"})  # whose calls the host's kernel serves for the workload
    storage: dict[str, Any] | None = None  # where the workload's files live, recorded with its load (I/O)


def measure(client: Client, endpoint: Endpoint, settings: Settings) -> dict[str, Any]:
    """The load's figures: {status: ok | skipped | failed, rounds, summary, traced, seccomp, ...}."""
    out: dict[str, Any] = {
        "client": client.describe(),
        "kind": client.KIND,
        "params": client.params(),
        "seconds_per_round": settings.seconds,
    }
    if endpoint.storage is not None:
        out["storage"] = endpoint.storage
    started = time.monotonic()
    try:
        tool = client.tool(endpoint.rootfs)
        prepare = client.init_argv(tool, endpoint.host, endpoint.port)
        if prepare is not None:
            client = client.initialised(run_client(endpoint.prefix + prepare, 600.0, endpoint))
        client = calibrated(client, tool, endpoint, settings)
        out["argv"] = {  # as run: anyone can run the client again by hand
            "init": None if prepare is None else endpoint.prefix + prepare,
            "round": endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, settings.seconds),
        }
        out.update(client.as_run(settings.seconds))
        out["rounds"] = [one_round(client, tool, endpoint, settings) for _ in range(settings.rounds)]
        out["summary"] = summarize(out["rounds"])
        out["traced"] = traced_round(client, tool, endpoint, settings)
        out["seccomp"] = trace.filters(endpoint.pids(), endpoint.kernel_roles, out["traced"])
        out["status"] = "ok"
    except LoadToolMissing as exc:
        out.update(status="skipped", reason=f"{exc} ({exc.hint})")
    except LoadFailed as exc:
        out.update(status="failed", reason=str(exc), logs=exc.hint)
    out["phase_s"] = round(time.monotonic() - started, 3)
    return out


def calibrated(client: Client, tool: list[str], endpoint: Endpoint, settings: Settings) -> Client:
    """redis-benchmark counts requests: a first batch says how many this side serves in a round."""
    if not isinstance(client, RedisBenchmark):
        return client
    first = client.parse(
        run_client(endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, 0), 120, endpoint)
    )
    return client.sized(first["ops_s"], settings.seconds)


def one_round(client: Client, tool: list[str], endpoint: Endpoint, settings: Settings) -> dict[str, Any]:
    pids = endpoint.pids()
    before = cpu_by_role(pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = run_client(
        endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, settings.seconds),
        settings.seconds + CLIENT_GRACE_S,
        endpoint,
    )
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = {role: round(seconds - before.get(role, 0.0), 4) for role, seconds in cpu_by_role(pids).items()}
    figures = parse(client, text, endpoint)
    client_cpu = (after_children.ru_utime - children.ru_utime) + (after_children.ru_stime - children.ru_stime)
    host_cpu = sum(used.values())
    return {
        **figures,
        "host_cpu_s": round(host_cpu, 4),
        "host_cpu_by_role_s": used,
        "host_cpu_s_per_1k_ops": round(host_cpu / figures["ops"] * 1000, 5) if figures["ops"] else None,
        "client_cpu_s": round(client_cpu, 4),
    }


def traced_round(client: Client, tool: list[str], endpoint: Endpoint, settings: Settings) -> dict[str, Any]:
    """The same round once more, with the system calls of every host process of the side counted
    by the host's kernel; the counting window is the client's run plus perf's attach before it
    and its stop after, whose idle calls are measured apart (an idle window as long) and taken
    out of the per-operation figure."""
    why = trace.unavailable() if settings.trace else "counting was not asked for"
    if why:
        return {"available": False, "reason": why}
    try:
        with trace.Keeper():
            idle, _ = counted_window(endpoint, lambda: time.sleep(settings.seconds))
            outputs: list[str] = []
            counted, pids = counted_window(
                endpoint,
                lambda: outputs.append(
                    run_client(
                        endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, settings.seconds),
                        settings.seconds + CLIENT_GRACE_S,
                        endpoint,
                    )
                ),
            )
    except OSError as exc:
        died_or_not(endpoint)  # a process gone before perf could attach: the workload may have died
        return {"available": False, "reason": f"host counting failed: {exc}"}
    figures = parse(client, outputs[0], endpoint)
    # the idle part of the loaded window (perf's attach and stop, around the client's run) is
    # taken out at each role's own idle rate
    idle_s = max(0.0, counted["window_s"] - figures["seconds"])
    idle_rate = {role: r["calls"] / idle["window_s"] for role, r in idle["by_role"].items()}
    for role, r in counted["by_role"].items():
        busy = max(0.0, r["calls"] - idle_rate.get(role, 0.0) * idle_s)
        r["per_op"] = round(busy / figures["ops"], 3) if figures["ops"] else None
        r["idle_calls_s"] = round(idle_rate.get(role, 0.0), 1)
    busy = max(0.0, counted["calls"] - sum(idle_rate.values()) * idle_s)
    processes = [{"pid": pid, "role": role, "name": _name(pid), **trace.seccomp(pid)} for pid, role in pids.items()]
    return {
        "available": True,
        "method": trace.METHOD,
        "ops": figures["ops"],
        "ops_s_while_counted": figures["ops_s"],
        **counted,
        "idle_window_s": idle["window_s"],
        "idle_calls_s": round(sum(idle_rate.values()), 1),
        "per_op": round(busy / figures["ops"], 3) if figures["ops"] else None,
        "processes": processes,
    }


def counted_window(endpoint: Endpoint, during: Callable[[], Any]) -> tuple[dict[str, Any], dict[int, str]]:
    """The host's counts of the endpoint's processes' system calls while `during` runs, with the
    window's length; and the processes counted. A process that ends between being listed and
    perf attaching (a PostgreSQL backend of the last round) makes perf fail: the processes are
    listed again, a few times, before that is an error."""
    for attempt in range(ATTACH_TRIES):
        pids = endpoint.pids()
        counting = trace.Counting(pids, endpoint.kvm_roles)
        try:
            counting.start()
        except OSError:
            if attempt == ATTACH_TRIES - 1:
                raise
            endpoint.alive()
            continue
        try:
            started = time.monotonic()
            during()
            window = time.monotonic() - started + trace.ATTACH_S
            return {**counting.stop(), "window_s": round(window, 3)}, pids
        except BaseException:
            counting.abort()
            raise
    raise AssertionError("unreachable")


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


def _name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None
