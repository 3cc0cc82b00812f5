"""The lifecycle of a measurement, one sequence for every plan:

    check    every chosen side against the scenario and this host, before any side starts
    prepare  what each side starts from (built or found, cached)
    measure  the plan's part: start instances (create, wait until ready), probe, load
    destroy  always: on success, failure, timeout and interrupt (deferred until done), each
             instance, then what prepare made for this run alone (release)

`explorer run` (RunPlan, here: starts one after another, probes on the last) and `explorer
density` (explorer/density_run.py: many running at once) are two plans over this sequence, so
that the checks, the document header and the start and destroy steps cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from explorer import inside_run, interrupts, readiness
from explorer.backends import Backend, backend_for
from explorer.errors import BackendUnavailable, ExplorerError, NotReady
from explorer.hostinfo import host_facts
from explorer.load import client_for, rounds
from explorer.load.phase import LoadPhase
from explorer.model import Artifact, Target
from explorer.probes import ProbeContext, identity, isolation, kernel, memory, size, visibility
from explorer.probes.startup import relative, summarize, timeline
from explorer.result import RESULT, SCHEMA_VERSION, Record, Result, SideRecord, TargetRecord
from explorer.result.validate import Unfit, validated
from explorer.scenario import Scenario
from explorer.sides import SIDES, of_kind

Progress = Callable[[str], Any]
PROBES = {
    "visibility": visibility.probe,
    "kernel": kernel.probe,
    "isolation": isolation.probe,
    "identity": identity.probe,
    "memory": memory.probe,
    "image": size.probe,
}
REFUSED_HINT = "run `explorer sides` to see what this host can run, or leave the side out of --sides"


def new_run_id() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Choice:
    """Which sides to measure: named ones (each must run: a refusal fails the run, naming every
    refused side), one kind (what cannot run is skipped, with its reason), or every side."""

    names: tuple[str, ...] | None = None
    kind: str | None = None

    @property
    def strict(self) -> bool:
        return self.names is not None

    def sides(self) -> tuple[str, ...]:
        if self.names is not None:
            return self.names
        return of_kind(self.kind) if self.kind else tuple(SIDES)


D = TypeVar("D", bound=Record)  # the document a plan writes: a run's Result, a density run's
H = TypeVar("H")  # the handle a side's targets hold: the lifecycle passes it along, never reads it


class Plan(Protocol):
    """What a command measures on each side, between prepare and the end of the side; and the
    entries of the document it keeps for the whole run (begin), which end() may fill in once
    every side is done (the run plan's native reference: measured with nothing of a side
    running, and only when the sides were, so a run that fails does not wait for it). `record`
    is the model of one side's record in its document."""

    @property
    def record(self) -> type[Record]: ...

    def begin(self, scenario: Scenario, say: Progress) -> dict[str, Any]: ...

    def end(self, scenario: Scenario, say: Progress) -> None: ...

    def measure(
        self, backend: Backend[H], scenario: Scenario, artifact: Artifact, run_id: str, say: Progress
    ) -> dict[str, Any]: ...


def typed(model: type[D], part: Any, what: str) -> D:
    """A part of the document as the typed model it must fit, checked as JSON writes it (a tuple
    is a list); a part that does not fit is explorer's own bug, said with the field."""
    try:
        return validated(model, part)
    except Unfit as exc:
        raise ExplorerError(
            f"{what} does not fit the result document ({model.__name__}): {'; '.join(exc.problems[:5])}",
            hint="a bug in explorer: please report it with the command that showed it",
        ) from None


def sequence(
    scenario: Scenario,
    choice: Choice,
    plan: Plan,
    document: type[D],
    schema: str,
    progress: Progress | None = None,
    run_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> D:
    """The typed document of `plan` measured on each chosen side: each side's record typed as
    soon as the side is done, the whole when every side is."""
    run_id = run_id or new_run_id()
    say = progress or (lambda message: None)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "schema": schema,
        "run_id": run_id,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host_facts(),
        "scenario": {
            **scenario.to_dict(),
            "load_client": None if scenario.load is None else client_for(scenario.load).describe(),
        },
        **(extra or {}),
        "sides": {},
        "skipped": {},
        "phases": {"sides": {}},
    }
    checked = check_sides(scenario, choice, doc["skipped"])  # every side's checks before any side starts
    doc["phases"]["check_s"] = round(time.monotonic() - started, 3)
    doc.update(plan.begin(scenario, say))
    for name, (backend, engine) in checked.items():
        phase_start = time.monotonic()
        artifact = backend.prepare(scenario, say)
        prepared = time.monotonic()
        try:
            measured = plan.measure(backend, scenario, artifact, run_id, say)
        finally:
            with interrupts.deferred():
                backend.release(artifact)
        spent = measured.pop("phases", {})
        doc["sides"][name] = typed(plan.record, {**backend.side.meta(), **measured, "engine": engine}, f"side {name}")
        doc["phases"]["sides"][name] = {
            "prepare_s": round(prepared - phase_start, 3),
            "measure_s": round(time.monotonic() - prepared, 3),
            **spent,
        }
    begun = time.monotonic()
    plan.end(scenario, say)
    doc["phases"]["reference_s"] = round(time.monotonic() - begun, 3)
    doc["phases"]["total_s"] = round(time.monotonic() - started, 3)
    doc["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sides = doc.pop("sides")
    whole = typed(document, {**doc, "sides": {}}, "the run")
    return whole.model_copy(update={"sides": sides})


def check_sides(
    scenario: Scenario, choice: Choice, skipped: dict[str, str]
) -> dict[str, tuple[Backend[Any], dict[str, Any]]]:
    """The backends of the chosen sides with their engine facts, each checked against the
    scenario and this host, then each side's limits (preflight) before any side starts."""
    checked: dict[str, tuple[Backend[Any], dict[str, Any]]] = {}
    refused: dict[str, str] = {}
    for name in choice.sides():
        try:
            checked[name] = checked_side(name, scenario)
        except BackendUnavailable as exc:
            refused[name] = f"{exc}" + (f" ({exc.hint})" if exc.hint else "")
    if refused and choice.strict:
        named = "; ".join(f"side {name}: {why}" for name, why in refused.items())
        raise BackendUnavailable(f"{len(refused)} of the sides asked for cannot run: {named}", hint=REFUSED_HINT)
    skipped.update(refused)
    if not checked:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped.items())
        raise BackendUnavailable(f"no side can run on this host ({reasons})", hint="run scripts/setup-host")
    for backend, _ in checked.values():
        backend.preflight(scenario)
    return checked


def checked_side(name: str, scenario: Scenario) -> tuple[Backend[Any], dict[str, Any]]:
    """The side's backend and engine facts; BackendUnavailable when it cannot serve the
    scenario, cannot run here, or an optional dependency of its parts is missing."""
    backend = backend_for(name)  # BackendUnavailable where libvirt-python, say, is not installed
    reason = backend.supports(scenario)
    if reason:
        raise BackendUnavailable(reason)
    return backend, backend.check()


# ---- the steps every plan takes ---------------------------------------------------------------


def start(
    backend: Backend[H], scenario: Scenario, artifact: Artifact, run_id: str, index: int, keep: list[Target[H]]
) -> Target[H]:
    """Create one instance (kept in `keep` from the moment the engine made it, for destroy)
    and wait until it is ready, as every plan does; NotReady carries its last output lines."""
    t0 = time.monotonic()
    with interrupts.deferred():  # once an engine has begun making it, destroy() needs its handle
        target = backend.create(scenario, artifact, run_id, index)
        keep.append(target)
    target.t0 = t0
    try:
        wait_until_ready(backend, scenario, target, t0)
    except NotReady as exc:
        raise NotReady(str(exc), hint=last_lines(backend, target)) from None
    return target


def wait_until_ready(backend: Backend[H], scenario: Scenario, target: Target[H], t0: float) -> None:
    """Wait for the target's protocol-level readiness (bounded by the side's timeout from t0,
    the create call) and mark it 'ready'; raises NotReady or the backend's error."""
    timeout = getattr(scenario.timeouts, backend.side.timeout)
    ready = readiness.until_ready(
        scenario.workload.ready,
        target.host_port,
        target.marks,
        backend.ready_after,
        lambda: backend.poll(target),
        t0 + timeout,
        what=f"the {backend.side.title} {target.name}",
    )
    target.mark("ready", ready)
    backend.poll(target)  # what the side can still see at once (a container's process, say)


def destroy(backend: Backend[H], target: Target[H]) -> None:
    with interrupts.deferred():
        backend.destroy(target)


def last_lines(backend: Backend[H], target: Target[H] | None) -> str:
    lines = backend.logs(target, 20) if target is not None else ""
    text = "its last output lines:\n" + lines if lines else "it printed nothing"
    cause = backend.diagnosis(target) if target is not None else None
    return f"{cause}; {text}" if cause else text


def probe(backend: Backend[H], scenario: Scenario, artifact: Artifact, target: Target[H]) -> dict[str, Any]:
    """Every probe on the running target; a guest view that cannot be had is reported, not
    fatal (an interrupt is not an ExplorerError: it ends the run)."""
    try:
        guest, guest_error = backend.guest_view(target), None
    except ExplorerError as exc:
        guest, guest_error = None, str(exc)
    problem = visibility.unmatched_names(guest, scenario.workload.processes, backend.side.kind)
    if problem:
        raise ExplorerError(
            problem,
            hint="name the workload's process as `ps -e` shows it (workload.processes in the scenario, or --process)",
        )
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
        accel=artifact.accel,
    )
    out: dict[str, Any] = {name: fn(ctx) for name, fn in PROBES.items()}
    out["inside"] = inside_run.measure(backend, scenario, target, guest, ctx.workload_pids).model_dump(mode="json")
    out["target"] = record_of(target)
    out["accel"] = artifact.accel.mode if artifact.accel else "native"
    out["accel_reason"] = artifact.accel.reason if artifact.accel else None
    return out


def record_of(target: Target[H]) -> dict[str, Any]:
    """What the document keeps of the probed instance: its facts, which are the record alone (what
    its engine needs to act on it is its handle's); a key TargetRecord does not declare is a bug."""
    unknown = sorted(set(target.facts) - set(TargetRecord.model_fields))
    if unknown:
        raise ExplorerError(
            f"the engine wrote {', '.join(unknown)} into {target.name}'s record, which the result document has no "
            "field for",
            hint="a bug in explorer: engine state belongs in the target's handle (explorer/guest/handles.py)",
        )
    return dict(target.facts)


# ---- explorer run ---------------------------------------------------------------------------


@dataclass
class RunPlan:
    """Start the workload `repeats` times per side, one after another; probe the last start."""

    repeats: int | None = None  # None: the scenario's, capped by the side's own max_repeats
    load: LoadPhase | None = None  # the standard load on the probed start (None: --no-load)
    record: type[Record] = SideRecord

    def begin(self, scenario: Scenario, say: Progress) -> dict[str, Any]:
        say("the inside probe as a plain host process (the native row)")
        native = inside_run.native()
        out: dict[str, Any] = {"inside_native": native.model_dump(mode="json") if native is not None else None}
        return {**out, "load": self.load.begin(scenario)} if self.load is not None else out

    def end(self, scenario: Scenario, say: Progress) -> None:
        if self.load is not None and self.load.pending:
            self.load.reference(scenario, say)

    def measure(
        self, backend: Backend[H], scenario: Scenario, artifact: Artifact, run_id: str, say: Progress
    ) -> dict[str, Any]:
        repeats = self.repeats or min(scenario.repeats, backend.side.max_repeats or scenario.repeats)
        timings: list[dict[str, float]] = []
        probed: dict[str, Any] = {}
        # where the time outside the starts goes; after_ready_s: waiting, on the probed start only,
        # for the milestones that come after readiness (the full-OS VM's sshd, `vagrant up`)
        # seconds per phase, and at the end each start's seconds (start_s: a list)
        spent: dict[str, Any] = {"probes_s": 0.0, "after_ready_s": 0.0, "destroy_s": 0.0}
        try:
            for index in range(repeats):
                say(f"{backend.side.name}: start {index + 1}/{repeats}")
                if index:  # the last instance's teardown, finished before this start's clock runs
                    with _spending(spent, "destroy_s"):
                        backend.settle()
                final = index == repeats - 1
                timings.append(self._one(backend, scenario, artifact, run_id, index, final, probed, spent, say))
        finally:
            with interrupts.deferred(), _spending(spent, "clean_s"):
                backend.clean(run_id)  # safety net: anything labelled with this run
        starts = [t.get("ready_s") for t in timings]
        spent.update(starts_s=round(sum(s or 0.0 for s in starts), 3), start_s=starts)
        return {
            "phases": spent,
            "backend": backend.name,
            "accel": probed.pop("accel", "native"),
            "accel_reason": probed.pop("accel_reason", None),
            **probed,
            "startup": {
                "milestones": list(backend.milestones),
                "repeats": timings,
                "summary": summarize(timings),
                "timeline": timeline(timings, backend.order),
            },
        }

    def _one(
        self,
        backend: Backend[H],
        scenario: Scenario,
        artifact: Artifact,
        run_id: str,
        index: int,
        final: bool,
        probed: dict[str, Any],
        spent: dict[str, float],
        say: Progress,
    ) -> dict[str, float]:
        kept: list[Target[H]] = []
        try:
            target = start(backend, scenario, artifact, run_id, index, kept)
            if final:  # probed while it runs, then its milestones that come after readiness
                with _spending(spent, "probes_s"):
                    probed.update(probe(backend, scenario, artifact, target))
                with _spending(spent, "after_ready_s"):
                    backend.after_ready(target)
                if self.load is not None:
                    with _spending(spent, "load_s"):
                        probed["load"] = self.load.side(backend, scenario, target, artifact.accel, say)
            return relative(target.marks, target.t0, backend.milestones)
        finally:
            for target in kept:
                with _spending(spent, "destroy_s"):
                    destroy(backend, target)


class _spending:
    """Adds the seconds spent in a `with` block to spent[key]."""

    def __init__(self, spent: dict[str, Any], key: str) -> None:
        self.spent, self.key = spent, key

    def __enter__(self) -> None:
        self.since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.spent[self.key] = round(self.spent.get(self.key, 0.0) + time.monotonic() - self.since, 3)


def run(
    scenario: Scenario,
    choice: Choice | None = None,
    repeats: int | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
    load: rounds.Settings | None = None,
) -> Result:
    """`explorer run`: the result document of the scenario on each chosen side (with `load`,
    the native reference and each side's probed start under the standard load)."""
    plan = RunPlan(repeats, LoadPhase(load) if load is not None else None)
    extra = {"schema_version": SCHEMA_VERSION}
    return sequence(scenario, choice or Choice(), plan, Result, RESULT, progress, run_id, extra)


def measure(
    backend: Backend[H], scenario: Scenario, artifact: Artifact, repeats: int, run_id: str, say: Progress | None = None
) -> SideRecord:
    """One side's record of a run (benchmarks and tests measure a side alone)."""
    measured = RunPlan(repeats).measure(backend, scenario, artifact, run_id, say or (lambda message: None))
    measured.pop("phases", None)
    engine = backend.check()
    return typed(SideRecord, {**backend.side.meta(), **measured, "engine": engine}, f"side {backend.side.name}")
