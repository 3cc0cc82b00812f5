"""Readiness as wait strategies (testcontainers' model): a workload is ready when a client
gets a real answer from it.

A TCP accept is not enough (Docker's port proxy and QEMU's hostfwd both accept before the
server listens), and a log line can come too early, so each strategy speaks a protocol. A
strategy is a small dataclass whose fields are its parameters; `STRATEGIES` is the one
registry, and the scenario schema reads its kinds and their parameters from it. Each
strategy remembers what it last saw, so that a timeout says what was waited for and what
came back instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from explorer.errors import NotReady
from explorer.readiness.base import ATTEMPT_TIMEOUT_S, Strategy
from explorer.readiness.fio import Fio
from explorer.readiness.strategies import Banner, Http, MongoDB, Postgres, Redis, Tcp

__all__ = [
    "ATTEMPT_TIMEOUT_S",
    "INTERVAL_S",
    "STRATEGIES",
    "Banner",
    "Fio",
    "Http",
    "MongoDB",
    "Postgres",
    "ReadySpec",
    "Redis",
    "Strategy",
    "Tcp",
    "attempt",
    "parse",
    "schema",
    "syntax",
    "wait_for_mark",
    "wait_ready",
]

# Between two readiness attempts: the resolution of every ready time (a refused attempt costs
# a container or a booted guest next to nothing; a VM's attempts wait for its network anyway).
INTERVAL_S = 0.01
LAST_ATTEMPT_S = 0.05  # no attempt is started with less time than this before the deadline
STRATEGIES: dict[str, type[Strategy]] = {cls.KIND: cls for cls in (Redis, Postgres, MongoDB, Http, Banner, Fio, Tcp)}


@dataclass(frozen=True)
class ReadySpec:
    """A scenario's `ready:`, parsed: a kind and all of its parameters (defaults filled in)."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_data(cls, data: str | Mapping[str, Any]) -> ReadySpec:
        """From a validated `ready:` value: `redis`, or `{http: {path: /, status: 200}}`."""
        kind, given = (data, None) if isinstance(data, str) else next(iter(data.items()))
        strategy = STRATEGIES[kind](**(given or {}))
        return cls(kind, tuple(strategy.params().items()))

    def strategy(self) -> Strategy:
        """A fresh strategy object (it remembers what it saw, so each wait gets its own)."""
        return STRATEGIES[self.kind](**dict(self.params))

    def as_data(self) -> dict[str, Any]:
        return {self.kind: dict(self.params)}

    def __str__(self) -> str:
        """The command line's form (see `parse`), e.g. http:/:200."""
        values = [_escaped(str(value)) for _, value in self.params]
        return ":".join([self.kind, *values]) if any(values) else self.kind


def schema() -> dict[str, Any]:
    """The JSON schema of `ready:`, read from the registry at call time: a kind, or a mapping
    of one kind to its parameters."""
    kinds = sorted(STRATEGIES)
    return {
        "type": ["string", "object"],
        "if": {"type": "string"},
        "then": {"enum": kinds},
        "else": {
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"enum": kinds},
            "properties": {kind: params_schema(cls) for kind, cls in STRATEGIES.items()},
        },
    }


def params_schema(cls: type[Strategy]) -> dict[str, Any]:
    return {"type": ["object", "null"], "additionalProperties": False, "properties": dict(cls.PARAMS)}


def parse(text: str) -> ReadySpec:
    """The command line's form: KIND[:VALUE...], values in the order of the kind's parameters,
    the last taking the rest of the text; an empty value keeps the default; \\r \\n \\t \\\\
    are escapes. Raises ValueError saying what is wrong."""
    kind, colon, rest = text.partition(":")
    if kind not in STRATEGIES:
        raise ValueError(f"unknown readiness kind {kind!r}; known: {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[kind]
    names = list(cls.PARAMS)
    if colon and not names:
        raise ValueError(f"{kind!r} takes no parameters")
    values = rest.split(":", len(names) - 1) if colon else []
    params = {}
    for name, value in zip(names, values):
        if value:
            params[name] = _converted(cls.PARAMS[name], f"{kind} {name}", value)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(params_schema(cls)).iter_errors(params))
    if error is not None:  # the same parameter schema a scenario file is validated against
        raise ValueError(f"{kind} {'.'.join(map(str, error.absolute_path))}: {error.message}")
    return ReadySpec.from_data({kind: params})


_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
_UNESCAPES = {value: f"\\{key}" for key, value in _ESCAPES.items()}


def _escaped(value: str) -> str:
    return "".join(_UNESCAPES.get(char, char) for char in value)


def _converted(param_schema: Mapping[str, Any], what: str, value: str) -> Any:
    if param_schema.get("type") == "integer":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{what} must be a whole number, not {value!r}") from None
    return re.sub(r"\\([rnt\\])", lambda m: _ESCAPES[m.group(1)], value)


def syntax() -> str:
    """Every kind in the command line's form, for --help: redis, http[:PATH[:STATUS]] (default http:/:200), ..."""
    forms = []
    for kind, cls in STRATEGIES.items():
        names = [name.upper() for name in cls.PARAMS]
        default = str(ReadySpec.from_data(kind))
        shown = f" (default {default})" if default != kind else ""
        forms.append(kind + "".join(f"[:{name}" for name in names) + "]" * len(names) + shown)
    return ", ".join(forms)


def as_strategy(ready: str | ReadySpec | Strategy) -> Strategy:
    if isinstance(ready, Strategy):
        return ready
    return (ready if isinstance(ready, ReadySpec) else ReadySpec.from_data(ready)).strategy()


def attempt(ready: str | ReadySpec | Strategy, host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
    """One readiness attempt; connection problems mean 'not yet', never an exception."""
    return as_strategy(ready).attempt(host, port, timeout)


def wait_ready(
    ready: str | ReadySpec | Strategy,
    host: str,
    port: int,
    deadline: float,
    between: Callable[[], None] | None = None,
    what: str = "the workload",
) -> float:
    """Retry the strategy's attempt until it succeeds; return the monotonic time it did.

    `between` runs after each failed attempt (a backend's poll, which may raise if the
    workload died). Raises NotReady once `deadline` (monotonic) passes, saying what was
    waited for and what was last seen.
    """
    strategy = as_strategy(ready)
    attempted = False
    while True:
        remaining = deadline - time.monotonic()
        # the last moments are too short for an attempt to say anything: what it saw before stands
        if remaining <= 0 or (attempted and remaining < LAST_ATTEMPT_S):
            raise NotReady(
                f"{what} did not answer a {strategy.KIND} readiness check on {host}:{port} in time: "
                f"waited for {strategy.describe()}; last saw {strategy.last_seen}"
            )
        attempted = True
        if strategy.attempt(host, port, min(ATTEMPT_TIMEOUT_S, remaining)):
            return strategy.ready_at or time.monotonic()
        if between is not None:
            between()
        time.sleep(min(INTERVAL_S, max(0.0, deadline - time.monotonic())))


def wait_for_mark(marks: Mapping[str, object], name: str | None, poll: Callable[[], None], deadline: float) -> None:
    """Poll until `name` is among `marks` (a backend's milestones, which `poll` records; it may
    raise if the workload died), at readiness's own interval, and return as soon as a poll has
    recorded it. At the deadline this returns: readiness reports the timeout."""
    while name and name not in marks and time.monotonic() < deadline:
        poll()
        if name not in marks:
            time.sleep(INTERVAL_S)


def until_ready(
    ready: str | ReadySpec | Strategy,
    port: int,
    marks: Mapping[str, object],
    gate: str | None,
    poll: Callable[[], None],
    deadline: float,
    what: str,
) -> float:
    """The one wait of a start: the engine's gate milestone (before which no check can pass),
    then protocol-level readiness on 127.0.0.1:`port`, `poll` run between attempts (it may
    raise if the workload died); the monotonic time it answered. NotReady (exit 4) when the
    gate never came or the check never passed by `deadline`."""
    wait_for_mark(marks, gate, poll, deadline)
    if gate and gate not in marks:
        kind = as_strategy(ready).KIND
        raise NotReady(
            f"{what} did not answer a {kind} readiness check in time: its {gate} milestone, "
            "before which no check can pass, never came"
        )
    return wait_ready(ready, "127.0.0.1", port, deadline, between=poll, what=what)
