"""`explorer density`, a plan of the lifecycle (explorer/lifecycle.py): per side, start
instances a step at a time and keep them all running, measure what they cost the host after
each step, then remove everything.

One instance's PSS, divided into the host's memory, ignores what instances share (PSS splits
a shared page between its users), the engine's own per-instance cost and the VMM's fixed
cost; starting N and fitting memory against N gives the marginal cost of one more instance,
the fixed cost, and how well a straight line describes them (the fit's residual). A memory
guard stops a side before the host's MemAvailable would fall below a floor; the fault rules
of a run apply (interrupts are deferred around create and cleanup, and everything created so
far is destroyed whatever happens).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from explorer import interrupts, lifecycle
from explorer import sides as sides_registry
from explorer.backends.base import Backend
from explorer.errors import BackendError, ExplorerError, NotReady, UsageError
from explorer.model import Artifact, Target
from explorer.probes import host_memory as figures
from explorer.result import DENSITY, DensityResult, DensitySide, Record
from explorer.scenario import Scenario
from explorer.units import human_bytes

H = TypeVar("H")  # the handle a side's targets hold: passed along, never read here

SCHEMA = DENSITY
FLOOR_FRACTION = 0.25  # never let MemAvailable fall below this share of what it was at the start
SAFETY = 1.25  # the next step is estimated to cost this much more than the marginal cost so far
CONTAINER_PRIOR_BYTES = 64 * 1024 * 1024  # the first step's estimate, before anything is measured
DESTROY_WORKERS = 4
Progress = lifecycle.Progress


@dataclass(frozen=True)
class Guard:
    """The memory floor, from the host's MemAvailable when the density run started."""

    start_available: int
    fraction: float = FLOOR_FRACTION

    @property
    def floor(self) -> int:
        return int(self.start_available * self.fraction)

    def refuses(self, available: int, per_instance: float, count: int) -> str | None:
        """Why `count` more instances at `per_instance` each (with a safety margin) must not be
        started now, or None if they keep MemAvailable above the floor."""
        projected = available - per_instance * count * SAFETY
        if projected >= self.floor:
            return None
        return (
            f"memory guard: {count} more at ~{human_bytes(per_instance)} each would leave "
            f"~{human_bytes(max(projected, 0))} available, below the floor of {human_bytes(self.floor)} "
            f"({self.fraction:.0%} of {human_bytes(self.start_available)} at the start)"
        )


def per_instance_estimate(steps: list[dict[str, Any]], prior: float) -> float:
    """The next instance's cost: the largest marginal cost seen so far (MemAvailable drop and
    summed PSS, on average and over the last step), or `prior` before the first step."""
    if not steps:
        return prior
    last = steps[-1]
    candidates = [last["available_drop_bytes"] / last["n"], last["pss_bytes"] / last["n"]]
    if len(steps) > 1:
        added = last["n"] - steps[-2]["n"]
        candidates += [(last[key] - steps[-2][key]) / added for key in ("available_drop_bytes", "pss_bytes")]
    return max(candidates)


def prior_bytes(backend: Backend[H], scenario: Scenario) -> float:
    """Before anything is measured: a VM's configured memory and half again (its VMM's own,
    and under TCG the translation cache); a container a small fixed guess."""
    if backend.side.kind == "vm":
        return scenario.vm.memory_mib * 1024 * 1024 * 1.5
    return CONTAINER_PRIOR_BYTES


def fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares y = slope * x + intercept, with the RMS of the residuals. With a single
    distinct x the line goes through the origin (slope y/x, no fixed cost to tell apart)."""
    if not xs or len(xs) != len(ys):
        raise ValueError("fit needs as many y as x values, at least one")
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        slope, intercept = (mean_y / mean_x if mean_x else 0.0), 0.0
    else:
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
        intercept = mean_y - slope * mean_x
    rms = math.sqrt(sum((y - slope * x - intercept) ** 2 for x, y in zip(xs, ys)) / n)
    return {"slope": slope, "intercept": intercept, "residual_rms": rms, "points": n}


def default_step(count: int) -> int:
    """About ten measurements per side."""
    return max(1, math.ceil(count / 10))


MAX_COUNT = 500


def parse_counts(text: str | None, chosen: tuple[str, ...] | None = None) -> tuple[int | None, dict[str, int]]:
    """--count as (one count for every side, or None; counts of named sides): "20",
    "runc=50,microvm=6", or both ("10,microvm=2": 10 for every side but the microVM)."""
    if text is None:
        return None, {}
    everyone: int | None = None
    named: dict[str, int] = {}
    for entry in (part.strip() for part in text.split(",")):
        side, _, value = entry.rpartition("=")
        side = side.strip()
        if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
            raise UsageError(f"--count: {entry!r} is not a count from 1 to {MAX_COUNT} (N or SIDE=N)")
        if not side:
            if everyone is not None:
                raise UsageError("--count gives the count for every side twice")
            everyone = int(value)
            continue
        sides_registry.get(side)  # an unknown side is a usage error naming the known ones
        if chosen is not None and side not in chosen:
            raise UsageError(
                f"--count names side {side}, which --sides does not run",
                hint=f"the sides of this run: {', '.join(chosen)}",
            )
        named[side] = int(value)
    return everyone, named


def run(
    scenario: Scenario,
    choice: lifecycle.Choice | None = None,
    count: int | None = None,
    step: int | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
    floor_fraction: float = FLOOR_FRACTION,
    ksm_settle_s: float = figures.KSM_SETTLE_S,
    counts: dict[str, int] | None = None,
) -> DensityResult:
    """The density document (explorer.density/1) of the scenario on each chosen side: `counts`
    of the side, else `count`, else the side's own `density_count` instances, `step` at a time."""
    if count is not None and count < 1 or step is not None and step < 1 or any(n < 1 for n in (counts or {}).values()):
        raise UsageError("--count and --step must be at least 1")
    guard = Guard(figures.mem_available(), floor_fraction)
    plan = DensityPlan(guard, count, step, counts or {}, ksm_settle_s)
    extra = {
        "guard": {
            "start_available_bytes": guard.start_available,
            "floor_bytes": guard.floor,
            "floor_fraction": floor_fraction,
            "safety": SAFETY,
        }
    }
    return lifecycle.sequence(
        scenario, choice or lifecycle.Choice(), plan, DensityResult, SCHEMA, progress, run_id, extra
    )


@dataclass
class DensityPlan:
    guard: Guard
    count: int | None
    step: int | None
    counts: dict[str, int]
    ksm_settle_s: float
    record: type[Record] = DensitySide

    def begin(self, scenario: Scenario, say: Progress) -> dict[str, Any]:
        return {}

    def end(self, scenario: Scenario, say: Progress) -> None:
        return None

    def measure(
        self, backend: Backend[H], scenario: Scenario, artifact: Artifact, run_id: str, say: Progress
    ) -> dict[str, Any]:
        count = self.counts.get(backend.side.name) or self.count or backend.side.density_count
        return measure_side(
            backend,
            scenario,
            artifact,
            count,
            self.step or default_step(count),
            run_id,
            say,
            self.guard,
            self.ksm_settle_s,
        )


def measure_side(
    backend: Backend[H],
    scenario: Scenario,
    artifact: Artifact,
    count: int,
    step: int,
    run_id: str,
    say: Progress,
    guard: Guard,
    ksm_settle_s: float = figures.KSM_SETTLE_S,
) -> dict[str, Any]:
    """Steps until `count` run or the guard refuses the next; everything removed at the end."""
    targets: list[Target[H]] = []
    steps: list[dict[str, Any]] = []
    base = {"available": figures.mem_available(), "daemons": figures.engine_daemons(backend.daemons)}
    prior = prior_bytes(backend, scenario)
    stopped = {"by": "count", "reason": f"all {count} instances ran"}
    asked = count
    if backend.at_once and count > backend.at_once[0]:
        count = backend.at_once[0]
        stopped = {"by": "engine", "reason": f"at most {count} at once: {backend.at_once[1]}"}
    try:
        while len(targets) < count:
            k = min(step, count - len(targets))
            refused = guard.refuses(figures.mem_available(), per_instance_estimate(steps, prior), k)
            if refused:
                stopped = {"by": "memory guard", "reason": refused}
                break
            try:
                steps.append(_step(backend, scenario, artifact, run_id, targets, k, base, say, ksm_settle_s))
            except (NotReady, BackendError) as exc:  # what ran until then is still a measurement
                stopped = {"by": "error", "reason": f"instance {len(targets)}: {exc}"}
                break
    finally:
        with interrupts.deferred():
            removal = remove_all(backend, targets, run_id)
    if removal["errors"]:
        raise BackendError(
            "could not remove everything: " + "; ".join(removal["errors"]),
            hint=f"what is left carries the label io.explorer.run={run_id}",
        )
    return {
        "backend": backend.name,
        "accel": artifact.accel.mode if artifact.accel else "native",
        "count_asked": asked,
        "step": step,
        "stopped": stopped,
        "removal": removal,
        "steps": steps,
        **summarize(steps, backend.side.kind),
    }


def _step(
    backend: Backend[H],
    scenario: Scenario,
    artifact: Artifact,
    run_id: str,
    targets: list[Target[H]],
    k: int,
    base: dict[str, Any],
    say: Progress,
    ksm_settle_s: float,
) -> dict[str, Any]:
    """Start `k` more instances one after another, each waited to readiness; then measure."""
    started = time.monotonic()
    ready = []
    for _ in range(k):
        say(f"{backend.side.name}: instance {len(targets) + 1}")
        target = lifecycle.start(backend, scenario, artifact, run_id, len(targets), targets)
        backend.after_ready(target)  # each instance settled as a user's would be before the next
        ready.append(round(target.marks["ready"] - target.t0, 4))
    step_s = time.monotonic() - started
    measuring = time.monotonic()
    ksm = figures.settle_ksm(timeout_s=ksm_settle_s)
    host = host_figures(backend, targets, base)
    return {
        "n": len(targets),
        "ready_s": ready,
        "step_s": round(step_s, 3),
        **host,
        "ksm": ksm,
        "measure_s": round(time.monotonic() - measuring, 3),
    }


def host_figures(backend: Backend[H], targets: list[Target[H]], base: dict[str, Any]) -> dict[str, Any]:
    """What the running instances cost the host now, against `base` (before the first)."""
    pids: list[int] = []
    vmms: list[int] = []
    for target in targets:
        runtime = backend.runtime_pids(target)
        pids += [*backend.host_pids(target), *runtime]
        vmms += [pid for pid, role in runtime.items() if role == "VMM"]
    available = figures.mem_available()
    daemons = figures.growth(base["daemons"], figures.engine_daemons(backend.daemons))
    out = {
        **figures.summed_memory(pids),
        "mem_available_bytes": available,
        "available_drop_bytes": base["available"] - available,
        "engine_growth": daemons,
        "engine_growth_bytes": sum(daemons.values()),
    }
    if backend.side.kind == "vm":
        out["tcg_cache_pss_bytes"] = figures.vmm_tcg_cache(vmms)
    return out


def remove_all(backend: Backend[H], targets: list[Target[H]], run_id: str) -> dict[str, Any]:
    """Destroy every target (a few at a time: 50 containers one by one take a while), then the
    run's labelled leftovers; errors are collected, so that one failure removes no less."""
    started = time.monotonic()
    errors: list[str] = []

    def destroy(target: Target[H]) -> None:
        try:
            backend.destroy(target)
        except ExplorerError as exc:
            errors.append(f"{target.name}: {exc}")

    with ThreadPoolExecutor(max_workers=DESTROY_WORKERS) as pool:
        list(pool.map(destroy, targets))
    try:
        leftovers = backend.clean(run_id)
    except ExplorerError as exc:
        leftovers, errors = [], [*errors, f"clean of run {run_id}: {exc}"]
    return {
        "destroyed": len(targets),
        "leftovers_removed": leftovers,
        "errors": errors,
        "remove_s": round(time.monotonic() - started, 3),
    }


def summarize(steps: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The fits over the steps: per instance (slope) and fixed (intercept) cost, with the RMS
    residual; start rate and how time to ready grows with N."""
    if not steps:
        return {"method": "measured", "count": 0, "fits": {}}
    ns = [float(s["n"]) for s in steps]
    series = {"pss": "pss_bytes", "available": "available_drop_bytes", "engine": "engine_growth_bytes"}
    if kind == "vm":
        series["tcg_cache"] = "tcg_cache_pss_bytes"
    fits = {name: fit(ns, [float(s[key]) for s in steps]) for name, key in series.items()}
    ready = [r for s in steps for r in s["ready_s"]]
    fits["ready"] = fit([float(i) for i in range(1, len(ready) + 1)], ready)
    out: dict[str, Any] = {
        "method": "measured",
        "count": steps[-1]["n"],
        "points": len(steps),
        "fit_basis": "least squares" if len(set(ns)) > 1 else "one point, through the origin",
    }
    for name in series:
        out[f"marginal_{name}_bytes"] = round(fits[name]["slope"])
        out[f"fixed_{name}_bytes"] = round(fits[name]["intercept"])
        out[f"residual_{name}_bytes"] = round(fits[name]["residual_rms"])
    out["marginal_host_bytes"] = out["marginal_pss_bytes"] + out["marginal_engine_bytes"]
    if kind == "vm":
        out["marginal_pss_without_tcg_cache_bytes"] = out["marginal_pss_bytes"] - out["marginal_tcg_cache_bytes"]
    out.update(
        ready_first_s=ready[0],
        ready_last_s=ready[-1],
        ready_slope_s=round(fits["ready"]["slope"], 4),
        start_rate_per_s=round(len(ready) / sum(ready), 3) if sum(ready) else None,
    )
    return {**out, "fits": fits}
