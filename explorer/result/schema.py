"""The JSON Schema of the result document, generated from its models (the file shipped beside
explorer/ is this, written out: `python -m explorer.result`), and whether a dotted path names a
field of the models (claims.yaml's paths are checked with it)."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel

from explorer.result.run import Result

SIDE_ROOTS = ("side", "container", "vm")  # what a claim's path may start with besides `host`


def document_schema() -> dict[str, Any]:
    """The result document's JSON Schema (draft 2020-12), from the models."""
    schema = Result.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "explorer.result/4",
        "title": "explorer's result document",
        "description": "One run of explorer: the host, the scenario, and per side what was measured. "
        "Generated from the models in explorer/result/ (python -m explorer.result); do not edit.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def schema_text() -> str:
    return json.dumps(document_schema(), indent=1, sort_keys=True) + "\n"


def declares(path: str, root: Any = Result) -> bool:
    """Whether a dotted path ("sides.*.image.content_bytes", "load.native.summary") is a field of
    the models from `root`: a named field, an entry of a map (any key), or "[]" for a list's items."""
    node: Any = root
    for segment in path.split("."):
        node = step(node, segment)
        if node is None:
            return False
    return True


def resolves(path: str) -> bool:
    """Whether a claim's path ("side.kernel.shared", "host.memory_bytes") names a field: its root
    is a side of the result (or the host)."""
    first, _, rest = path.partition(".")
    if first == "host":
        return declares(f"host.{rest}")
    return first in SIDE_ROOTS and declares(f"sides.*.{rest}")


def step(node: Any, segment: str) -> Any:
    """The type one segment below `node` (None: no such field)."""
    for member in _members(node):
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = next(
                (f for n, f in member.model_fields.items() if segment in (n, f.alias)),
                None,
            )
            if field is not None:
                return field.annotation
        elif origin is dict:
            return typing.get_args(member)[1]
        elif origin in (list, tuple) and segment == "[]":
            return typing.get_args(member)[0]
    return None


def _members(node: Any) -> list[Any]:
    """The types a field may hold: the members of a union, None left out."""
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(node) for m in _members(arg) if m is not type(None)]
    return [node]
