"""The standard load of a scenario: which client, with which parameters (`load:` in a scenario,
validated like `ready:`, its kinds and parameters read from the one registry of clients), and
the default for each readiness kind (a workload explorer knows how to ask for readiness, it
knows how to load: redis-benchmark, pgbench, wrk, a MongoDB or line-protocol loop, fio).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from explorer.load.clients import Client, LineLoop, LoadToolMissing, MongoLoop, PgBench, RedisBenchmark, Wrk
from explorer.load.io import Fio

__all__ = ["CLIENTS", "DEFAULT_BY_READY", "Client", "LoadSpec", "LoadToolMissing", "default_for", "schema"]

CLIENTS: dict[str, type[Client]] = {cls.KIND: cls for cls in (RedisBenchmark, PgBench, Wrk, MongoLoop, LineLoop, Fio)}
# readiness kind -> load kind; the parameters a readiness check has that a load needs too
DEFAULT_BY_READY = {
    "redis": "redis",
    "postgres": "postgres",
    "http": "http",
    "mongodb": "mongodb",
    "banner": "line",
    "fio": "fio",
}
FROM_READY = {"http": {"path": "path"}, "banner": {"send": "send", "expect": "expect"}}


@dataclass(frozen=True)
class LoadSpec:
    """A scenario's `load:`, parsed: a kind and all of its parameters (defaults filled in)."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_data(cls, data: str | Mapping[str, Any]) -> LoadSpec:
        kind, given = (data, None) if isinstance(data, str) else next(iter(data.items()))
        return cls(kind, tuple(CLIENTS[kind](**(given or {})).params().items()))

    def client(self) -> Client:
        return CLIENTS[self.kind](**dict(self.params))

    def as_data(self) -> dict[str, Any]:
        return {self.kind: dict(self.params)}


def schema() -> dict[str, Any]:
    """`load:`: a kind, a mapping of one kind to its parameters, or false (no load)."""
    kinds = sorted(CLIENTS)
    return {
        "anyOf": [
            {"const": False},
            {"type": "string", "enum": kinds},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {"enum": kinds},
                "properties": {
                    kind: {"type": ["object", "null"], "additionalProperties": False, "properties": dict(cls.PARAMS)}
                    for kind, cls in CLIENTS.items()
                },
            },
        ]
    }


def default_for(ready_kind: str, ready_params: Mapping[str, Any]) -> LoadSpec | None:
    """The standard load of a workload that answers `ready_kind` (None: no protocol known, as
    for a bare TCP readiness)."""
    kind = DEFAULT_BY_READY.get(ready_kind)
    if kind is None:
        return None
    carried = {
        load: ready_params[ready]
        for ready, load in FROM_READY.get(ready_kind, {}).items()
        if ready_params.get(ready) not in (None, "")
    }
    return LoadSpec.from_data({kind: carried})
