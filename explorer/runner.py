"""The lifecycle of a run: check, prepare, then per side and repeat create, wait, probe,
destroy. Destroy always runs: on success, failure, timeout and Ctrl-C."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from explorer import readiness
from explorer.backends import get_backend
from explorer.backends.base import Artifact, Backend, Target
from explorer.document import CURRENT
from explorer.errors import BackendError, BackendUnavailable, ExplorerError, NotReady
from explorer.hostinfo import host_facts
from explorer.probes import ProbeContext, isolation, kernel, memory, size, visibility
from explorer.probes.startup import relative, summarize
from explorer.scenario import Scenario
from explorer.sides import SIDES

RESULT_SCHEMA = CURRENT
PROBES = {
    "visibility": visibility.probe,
    "kernel": kernel.probe,
    "isolation": isolation.probe,
    "memory": memory.probe,
    "image": size.probe,
}
Progress = Callable[[str], Any]
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each ends a run, its resources removed


def new_run_id() -> str:
    return secrets.token_hex(4)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Let a step finish (cleanup, or a create whose handle cleanup needs): a SIGINT, SIGTERM
    or SIGHUP arriving during it takes effect once it is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    deferred = [sig for sig in INTERRUPTS if signal.getsignal(sig) is not signal.SIG_IGN]  # ignored stays ignored
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in deferred}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been


def run(
    scenario: Scenario,
    sides: tuple[str, ...] | None = None,
    repeats: int | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Measure the scenario on each side (None: every registered side this host can run) and
    return the result document."""
    run_id = run_id or new_run_id()
    say = progress or (lambda message: None)
    started = time.monotonic()
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "run_id": run_id,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host_facts(),
        "scenario": scenario.to_dict(),
        "sides": {},
        "skipped": {},
        "phases": {"sides": {}},
    }
    backends, engines = check_sides(sides, result["skipped"], scenario)  # fail early, before any build
    for backend in backends.values():
        backend.preflight(scenario)  # every side's limits before any side starts
    result["phases"]["check_s"] = round(time.monotonic() - started, 3)
    for name, backend in backends.items():
        phase_start = time.monotonic()
        artifact = backend.prepare(scenario, say)
        prepared = time.monotonic()
        side_repeats = repeats or min(scenario.repeats, backend.side.max_repeats or scenario.repeats)
        measured = measure(backend, scenario, artifact, side_repeats, run_id, say)
        spent = measured.pop("phases")
        result["sides"][name] = {**backend.side.meta(), **measured, "engine": engines[name]}
        result["phases"]["sides"][name] = {
            "prepare_s": round(prepared - phase_start, 3),
            "measure_s": round(time.monotonic() - prepared, 3),
            "starts_s": round(sum(r.get("ready_s", 0.0) for r in measured["startup"]["repeats"]), 3),
            "start_s": [r.get("ready_s") for r in measured["startup"]["repeats"]],  # each create -> ready
            **spent,
        }
    result["phases"]["total_s"] = round(time.monotonic() - started, 3)
    result["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return result


def check_sides(
    names: tuple[str, ...] | None, skipped: dict[str, str], scenario: Scenario | None = None
) -> tuple[dict[str, Backend], dict[str, dict[str, Any]]]:
    """Backends and engine facts of the sides to measure. Sides asked for by name must run
    (their BackendUnavailable propagates); by default a side that cannot run here is skipped
    and its reason recorded."""
    backends, engines = {}, {}
    for name in names if names is not None else tuple(SIDES):
        try:
            backend = _checked(name, scenario, engines)
        except BackendUnavailable as exc:
            if names is not None:
                raise BackendUnavailable(f"side {name}: {exc}", hint=exc.hint) from None
            skipped[name] = f"{exc}" + (f" ({exc.hint})" if exc.hint else "")
            continue
        backends[name] = backend
    if not backends:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped.items())
        raise BackendUnavailable(f"no side can run on this host ({reasons})", hint="run scripts/setup-host")
    return backends, engines


def _checked(name: str, scenario: Scenario | None, engines: dict[str, dict[str, Any]]) -> Backend:
    """The side's backend, checked (its engine facts into `engines`); BackendUnavailable when
    it cannot run here or cannot serve `scenario`, or its optional dependency is missing."""
    try:
        backend = get_backend(name)
    except ImportError as exc:  # e.g. libvirt-python not installed
        raise BackendUnavailable(f"cannot load its backend: {exc}", hint="make venv (pip install -e .)") from None
    reason = backend.supports(scenario) if scenario is not None else None
    if reason:
        raise BackendUnavailable(reason)
    engines[name] = backend.check()
    return backend


def measure(
    backend: Backend, scenario: Scenario, artifact: Artifact, repeats: int, run_id: str, say: Progress
) -> dict[str, Any]:
    """Start the workload `repeats` times; probe it on the last start, while it runs."""
    timings: list[dict[str, float]] = []
    probed: dict[str, Any] = {}
    spent: dict[str, float] = {"probes_s": 0.0, "destroy_s": 0.0}  # where the time outside starts goes
    try:
        for index in range(repeats):
            say(f"{backend.side.name}: start {index + 1}/{repeats}")
            final = index == repeats - 1
            if index:  # the last instance's teardown, finished before this start's clock runs
                settling = time.monotonic()
                backend.settle()
                _spend(spent, "destroy_s", settling)
            timings.append(_one_start(backend, scenario, artifact, run_id, index, probed if final else None, spent))
    finally:
        with interrupts_deferred():
            cleaning = time.monotonic()
            backend.clean(run_id)  # safety net: anything labelled with this run
            _spend(spent, "clean_s", cleaning)
    return {
        "phases": spent,
        "backend": backend.NAME,
        "accel": probed.pop("accel", "native"),
        **probed,
        "startup": {"milestones": list(backend.MILESTONES), "repeats": timings, "summary": summarize(timings)},
    }


def _one_start(
    backend: Backend,
    scenario: Scenario,
    artifact: Artifact,
    run_id: str,
    index: int,
    probes_out: dict[str, Any] | None,
    spent: dict[str, float] | None = None,
) -> dict[str, float]:
    target: Target | None = None
    t0 = time.monotonic()
    try:
        with interrupts_deferred():  # once an engine has begun making it, destroy() needs its handle
            target = backend.create(scenario, artifact, run_id, index)
        wait_until_ready(backend, scenario, target, t0)
        if probes_out is not None:
            probed = time.monotonic()
            probes_out.update(run_probes(backend, scenario, artifact, target))
            _spend(spent, "probes_s", probed)
        return relative(target.marks, t0, backend.MILESTONES)
    except NotReady as exc:
        raise NotReady(str(exc), hint=_last_lines(backend, target)) from None
    finally:
        if target is not None:
            with interrupts_deferred():
                destroying = time.monotonic()
                backend.destroy(target)
                _spend(spent, "destroy_s", destroying)


def wait_until_ready(backend: Backend, scenario: Scenario, target: Target, t0: float) -> None:
    """Wait for the target's protocol-level readiness (bounded by the side's timeout from t0,
    the create call) and mark it 'ready'; raises NotReady or the backend's error."""
    timeout = getattr(scenario.timeouts, backend.side.timeout)
    readiness.wait_for_mark(target.marks, backend.READY_AFTER, lambda: backend.poll(target), t0 + timeout)
    ready = readiness.wait_ready(
        scenario.workload.ready, "127.0.0.1", target.host_port, t0 + timeout,
        between=lambda: backend.poll(target), what=f"the {backend.side.title} {target.name}",
    )
    target.mark("ready", ready)
    backend.after_ready(target)


def _spend(spent: dict[str, float] | None, key: str, since: float) -> None:
    if spent is not None:
        spent[key] = round(spent.get(key, 0.0) + time.monotonic() - since, 3)


def _last_lines(backend: Backend, target: Target | None) -> str:
    lines = backend.logs(target, 20) if target is not None else ""
    text = "its last output lines:\n" + lines if lines else "it printed nothing"
    cause = backend.diagnosis(target) if target is not None else None
    return f"{cause}; {text}" if cause else text


def run_probes(backend: Backend, scenario: Scenario, artifact: Artifact, target: Target) -> dict[str, Any]:
    """Every probe on the running target; a guest view that cannot be had is reported, not fatal."""
    try:
        guest, guest_error = backend.guest_view(target), None
    except (BackendError, ExplorerError) as exc:
        guest, guest_error = None, str(exc)
    problem = visibility.unmatched_names(guest, scenario.workload.processes, backend.side.kind)
    if problem:
        raise ExplorerError(problem, hint="name the workload's process as `ps -e` shows it "
                                          "(workload.processes in the scenario, or --process)")
    ctx = ProbeContext(
        side=backend.side.name,
        kind=backend.side.kind,
        roles=backend.side.roles,
        scenario=scenario,
        artifact=artifact,
        workload_pids=backend.host_pids(target),
        runtime_pids=backend.runtime_pids(target),
        guest=guest,
        guest_error=guest_error,
        facts=target.facts,
    )
    out: dict[str, Any] = {name: probe(ctx) for name, probe in PROBES.items()}
    out["target"] = {k: v for k, v in target.facts.items() if _jsonable(v)}
    out["accel"] = target.facts.get("accel", "native")
    return out


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict, type(None)))
