"""The small rule language claims are written in (explorer/claims/claims.yaml): figures computed
from dotted paths into a result, tests on them, and evidence templates. Nothing in a claims
file is executed as Python: this module evaluates the language, claims.py judges with it."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from explorer import units

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
FORMATS: dict[str, Callable[[Any], str]] = {
    "bytes": units.human_bytes,
    "seconds": units.seconds,
    "times": units.times,
    "percent": units.percent,
    "count": units.count,
}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")


class Missing(Exception):
    """A figure a rule needs is absent from the result: its part is inconclusive, not failed."""


View = dict[str, BaseModel]  # the side(s) a part reads, by root name ("side", "container", "vm"), and the host


def lookup(view: View, path: str) -> Any:
    """The value at a dotted path: a field of the typed document (a model's field, or an entry of
    a map of data-named entries); absent or null is Missing (the part is inconclusive)."""
    root, _, rest = path.partition(".")
    node: Any = view.get(root, _ABSENT)
    for key in rest.split("."):
        if node is None:
            break
        node = _field(node, key)
        if node is _ABSENT:
            raise Missing(f"the result has no {path}")
    if node is None or node is _ABSENT:
        raise Missing(f"{path} is unknown (null)")
    return node


_ABSENT = object()


def _field(node: Any, key: str) -> Any:
    if isinstance(node, BaseModel):
        return getattr(node, key) if key in type(node).model_fields else _ABSENT
    if isinstance(node, dict):
        return node.get(key, _ABSENT)
    return _ABSENT


def _list(result: View, path: str) -> list[Any]:
    value = lookup(result, path)
    if not isinstance(value, list):
        raise Missing(f"{path} is not a list")
    return value


def _matches(item: Any, where: dict[str, Any]) -> bool:
    if not where:
        return True
    return isinstance(item, BaseModel) and all(_field(item, k) == v for k, v in where.items())


def _values(item: Any) -> dict[str, Any]:
    """An item's fields, for a template ("{name} {host_pid}")."""
    return item.model_dump() if isinstance(item, BaseModel) else {}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Missing(f"{value!r} is not a number")
    return value


def figure(spec: Any, result: View, figures: dict[str, Any]) -> Any:
    """Compute one figure from its spec (see the top of claims.yaml)."""
    if isinstance(spec, (int, float)):
        return spec
    if isinstance(spec, str):
        return lookup(result, spec) if "." in spec else figures[spec]
    if "path" in spec:
        try:
            return lookup(result, spec["path"])
        except Missing:
            if "default" in spec:
                return spec["default"]
            raise
    if "first" in spec:
        return _first(spec, result, figures)
    if "len" in spec:
        return len(_list(result, spec["len"]))
    if "count" in spec:
        return sum(_matches(i, spec.get("where", {})) for i in _list(result, spec["count"]))
    if "join" in spec:
        items = [i for i in _list(result, spec["join"]) if _matches(i, spec.get("where", {}))]
        shown = [fill(spec["item"], _values(i)) if "item" in spec else str(i) for i in items]
        return ", ".join(shown) or spec.get("empty", "none")
    values = [_number(figure(item, result, figures)) for item in next(iter(spec.values()))]
    if "sum" in spec:
        return sum(values)
    if "diff" in spec:
        return values[0] - values[1]
    if values[1] == 0:
        raise Missing("a ratio divides by zero")
    return values[0] / values[1]


def _first(spec: dict[str, Any], result: View, figures: dict[str, Any]) -> Any:
    """The first of the operands that is present (a measured figure before an estimate)."""
    for item in spec["first"]:
        try:
            return figure(item, result, figures)
        except Missing:
            continue
    if "default" in spec:
        return spec["default"]
    raise Missing("none of " + ", ".join(map(str, spec["first"])) + " is in the result")


def passes(test: dict[str, Any], figures: dict[str, Any]) -> bool:
    if "all" in test:
        return all(passes(t, figures) for t in test["all"])
    if "any" in test:
        return any(passes(t, figures) for t in test["any"])
    if "not" in test:
        return not passes(test["not"], figures)
    value = figures[test["figure"]]
    if "between" in test:
        low, high = test["between"]
        return bool(low <= _number(value) <= high)
    op, other = next((k, v) for k, v in test.items() if k != "figure")
    other = figures[other["figure"]] if isinstance(other, dict) else other
    try:
        return bool(COMPARISONS[op](value, other))
    except TypeError:
        raise Missing(f"cannot compare {value!r} with {other!r}") from None


def fill(template: str, values: dict[str, Any]) -> str:
    """Substitute {name} and {name:format}; a regex, not str.format, so a template cannot
    reach attributes of the values."""

    def one(match: re.Match[str]) -> str:
        name, fmt = match.groups()
        if name not in values:
            return "?"
        value = values[name]
        if fmt and isinstance(value, (int, float)):
            return FORMATS[fmt](value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return PLACEHOLDER.sub(one, template)
