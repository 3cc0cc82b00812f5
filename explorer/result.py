"""The result document's schema: the contract between the half that measures (the lifecycle
and its plans) and the half that reads (claims, the report, the page, compare).

One JSON Schema (result.schema.json beside this file), versioned by `schema_version`. The
lifecycle validates what it writes, and every reader validates what it reads. An object of
named fields lists them under `properties` (and tolerates fields it does not list, so a newer
explorer's extra figures do not break an older reader); a map of data-named entries (sides,
milestones, system calls, roles) has `additionalProperties` with its entries' schema.
`declares` tells whether a dotted path is part of the contract: tests check every path that
claims.yaml and the tables read against it, so that renaming a figure breaks a test rather
than a verdict.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema

RESULT = "explorer.result/3"
SCHEMA_VERSION = 3
DENSITY = "explorer.density/1"
# older results a reader upgrades (explorer/document.py says how)
UPGRADABLE = ("explorer.result/1", "explorer.result/2")


@functools.cache
def schema() -> dict[str, Any]:
    """The result document's JSON Schema, as shipped with explorer."""
    text = resources.files("explorer").joinpath("result.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    checker = jsonschema.Draft202012Validator
    checker.check_schema(schema())
    return checker(schema())


def problems(doc: Any, limit: int = 5) -> list[str]:
    """Where `doc` departs from the schema, each as 'field/path: what is wrong' (at most `limit`).
    The document is checked as it is written (JSON: a tuple is an array)."""
    written = json.loads(json.dumps(doc))
    found = sorted(_validator().iter_errors(written), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in found[:limit]]


def declares(path: str) -> bool:
    """Whether a dotted path ("sides.*.image.content_bytes", "load.native.summary") is a field
    of the schema: a named property, an entry of a map (any key), or "[]" for a list's items."""
    node = schema()
    for segment in path.split("."):
        step = _step(node, segment)
        if step is None:
            return False
        node = step
    return True


def _step(node: dict[str, Any], segment: str) -> dict[str, Any] | None:
    node = _resolved(node)
    if segment == "[]":
        items = node.get("items")
        return items if isinstance(items, dict) else None
    if segment in node.get("properties", {}):
        return node["properties"][segment]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    for choice in node.get("anyOf", []):  # e.g. a figure that is a number or an object
        found = _step(choice, segment)
        if found is not None:
            return found
    return None


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    """A node with its local $ref followed ("#/$defs/spread")."""
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = schema()["$defs"][name]
    return node
