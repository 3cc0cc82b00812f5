"""The standard load of a scenario in the scenario's words: which client, with which parameters
(`load:` in a scenario, validated like `ready:`), and the default for each readiness kind (a
workload explorer knows how to ask for readiness, it knows how to load: redis-benchmark,
pgbench, wrk, a MongoDB or line-protocol loop, fio). Running the load is explorer/load/'s;
its clients take their parameters' schemas and defaults from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_BY_READY", "PARAMS", "LoadSpec", "default", "default_for", "schema"]

# kind -> parameter -> its JSON schema, with its default
PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "redis": {
        "clients": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
        "pipeline": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
        "data_bytes": {"type": "integer", "minimum": 1, "maximum": 1048576, "default": 3},
    },
    "postgres": {
        "scale": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
        "clients": {"type": "integer", "minimum": 1, "maximum": 100, "default": 4},
        "user": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "default": "postgres"},
    },
    "http": {
        "connections": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10},
        "path": {"type": "string", "pattern": r"^/\S*$", "default": "/"},
    },
    "mongodb": {},
    "line": {
        "send": {"type": "string", "minLength": 1, "default": "PING\r\n"},
        "expect": {"type": "string", "default": ""},
    },
    "fio": {
        "size_mib": {"type": "integer", "minimum": 16, "maximum": 4096, "default": 256},
        "direct": {"type": "boolean", "default": True},
    },
}
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


def default(kind: str, name: str) -> Any:
    """A parameter's default, as its client's dataclass field takes it."""
    return PARAMS[kind][name]["default"]


@dataclass(frozen=True)
class LoadSpec:
    """A scenario's `load:`, parsed: a kind and all of its parameters (defaults filled in)."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_data(cls, data: str | Mapping[str, Any]) -> LoadSpec:
        kind, given = (data, None) if isinstance(data, str) else next(iter(data.items()))
        known = PARAMS[kind]
        unknown = sorted(set(given or {}) - set(known))
        if unknown:
            raise ValueError(f"the {kind} load has no parameter {', '.join(unknown)}")
        return cls(kind, tuple((name, (given or {}).get(name, spec["default"])) for name, spec in known.items()))

    def as_data(self) -> dict[str, Any]:
        return {self.kind: dict(self.params)}


def schema() -> dict[str, Any]:
    """`load:`: a kind, a mapping of one kind to its parameters, or false (no load)."""
    kinds = sorted(PARAMS)
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
                    kind: {"type": ["object", "null"], "additionalProperties": False, "properties": params}
                    for kind, params in PARAMS.items()
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
