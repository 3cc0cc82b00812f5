"""The document's claims, judged from a result's figures.

The claims are data (claims.yaml, validated on load) so that one is added or reworded without
code; this module only evaluates the small rule language they are written in: dotted paths,
a few list and arithmetic operations, comparisons. Nothing in the file is executed as Python.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from explorer.errors import ExplorerError
from explorer.report import SIDE_TITLES, human_bytes, seconds

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt,
    "le": operator.le, "gt": operator.gt, "ge": operator.ge,
}
FORMATS: dict[str, Callable[[Any], str]] = {
    "bytes": human_bytes,
    "seconds": seconds,
    "times": lambda v: f"{v:.0f}x" if v >= 100 else f"{v:.1f}x",
    "percent": lambda v: f"{v * 100:.0f}%",
    "count": lambda v: f"{int(v):,}",
}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")

_NAME = {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$"}
_PATH = {"type": "string", "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$"}
_OPERAND = {"$ref": "#/$defs/operand"}
_WHERE = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}
_VALUE = {"anyOf": [{"type": ["string", "number", "boolean"]}, {
    "type": "object", "required": ["figure"], "additionalProperties": False, "properties": {"figure": _NAME}}]}


def _only(key: str, value: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": [key], "additionalProperties": False,
            "properties": {key: value, **optional}}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "claims"],
    "properties": {
        "version": {"const": 1},
        "source": {"type": "string"},
        "claims": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/claim"}},
    },
    "$defs": {
        "claim": {
            "type": "object", "additionalProperties": False, "required": ["id", "title", "quotes", "parts"],
            "properties": {
                "id": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*$"},
                "title": {"type": "string", "minLength": 1},
                "quotes": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "parts": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/part"}},
            },
        },
        "part": {
            "type": "object", "additionalProperties": False, "required": ["needs", "rule", "test", "evidence"],
            "properties": {
                "needs": {"type": "array", "minItems": 1, "uniqueItems": True,
                          "items": {"enum": list(SIDE_TITLES)}},
                "rule": {"type": "string", "minLength": 1},
                "figures": {"type": "object", "propertyNames": _NAME, "additionalProperties": _OPERAND},
                "test": {"$ref": "#/$defs/test"},
                "evidence": {"anyOf": [{"type": "string"}, {
                    "type": "object", "additionalProperties": False,
                    "required": ["reproduced", "not_reproduced"],
                    "properties": {"reproduced": {"type": "string"}, "not_reproduced": {"type": "string"}}}]},
                "notes": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["when", "text"],
                    "properties": {"when": {"$ref": "#/$defs/test"}, "text": {"type": "string"}}}},
            },
        },
        "operand": {"anyOf": [
            _PATH, _NAME, {"type": "number"},
            _only("path", _PATH, default={}),
            _only("len", _PATH),
            _only("count", _PATH, where=_WHERE),
            _only("join", _PATH, where=_WHERE, item={"type": "string"}, empty={"type": "string"}),
            _only("sum", {"type": "array", "minItems": 1, "items": _OPERAND}),
            _only("diff", {"type": "array", "minItems": 2, "maxItems": 2, "items": _OPERAND}),
            _only("ratio", {"type": "array", "minItems": 2, "maxItems": 2, "items": _OPERAND}),
        ]},
        "test": {"anyOf": [
            {"type": "object", "required": ["figure"], "additionalProperties": False,
             "minProperties": 2, "maxProperties": 2,
             "properties": {"figure": _NAME, "between": {"type": "array", "minItems": 2, "maxItems": 2,
                                                         "items": {"type": "number"}},
                            **{op: _VALUE for op in COMPARISONS}}},
            _only("all", {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/test"}}),
            _only("any", {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/test"}}),
            _only("not", {"$ref": "#/$defs/test"}),
        ]},
    },
}


class ClaimsError(ExplorerError):
    """claims.yaml does not validate: a broken claims file would judge wrongly, so stop."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = problems
        text = f"invalid claims file {source}:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text, hint="see the format described at the top of explorer/claims.yaml")


class Missing(Exception):
    """A figure a rule needs is absent from the result: its part is inconclusive, not failed."""


# ---- loading and validation --------------------------------------------------------------


def load(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The claims from `path`, or the bundled claims.yaml; every problem reported at once."""
    if path is None:
        return _bundled()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ClaimsError([f"cannot read it: {exc.strerror}"], str(path)) from None
    return _parse(text, str(path))


@functools.lru_cache(maxsize=1)
def _bundled() -> list[dict[str, Any]]:
    text = resources.files("explorer").joinpath("claims.yaml").read_text()
    return _parse(text, "explorer/claims.yaml")


def _parse(text: str, source: str) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClaimsError([f"not YAML: {exc}"], source) from None
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]
    if not problems:
        problems = [p for claim in doc["claims"] for p in _check_names(claim)]
        ids = [c["id"] for c in doc["claims"]]
        problems += [f"claim id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise ClaimsError(problems, source)
    return doc["claims"]


def _check_names(claim: dict[str, Any]) -> list[str]:
    """Names the schema cannot check: figures used in tests and templates must be defined."""
    problems = []
    for index, part in enumerate(claim["parts"]):
        where = f"claims/{claim['id']}/parts/{index}"
        defined: list[str] = []
        for name, spec in part.get("figures", {}).items():
            problems += [f"{where}/figures/{name}: {r!r} is not a figure defined before it"
                         for r in _references(spec) if r not in defined]
            defined.append(name)
        tests = [part["test"], *(note["when"] for note in part.get("notes", []))]
        problems += [f"{where}/test: unknown figure {n!r}" for t in tests for n in _test_names(t) if n not in defined]
        templates = _templates(part)
        for name, fmt in (m.groups() for t in templates for m in PLACEHOLDER.finditer(t)):
            if name not in defined:
                problems.append(f"{where}: template uses unknown figure {name!r}")
            if fmt and fmt not in FORMATS:
                problems.append(f"{where}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return problems


def _references(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [] if "." in spec else [spec]
    if isinstance(spec, dict):
        for key in ("sum", "diff", "ratio"):
            if key in spec:
                return [r for item in spec[key] for r in _references(item)]
    return []


def _test_names(test: dict[str, Any]) -> list[str]:
    if "figure" in test:
        value = next(v for k, v in test.items() if k != "figure")
        return [test["figure"], *([value["figure"]] if isinstance(value, dict) else [])]
    inner = test.get("all") or test.get("any") or [test["not"]]
    return [name for t in inner for name in _test_names(t)]


def _templates(part: dict[str, Any]) -> list[str]:
    evidence = part["evidence"]
    texts = [evidence] if isinstance(evidence, str) else list(evidence.values())
    return texts + [note["text"] for note in part.get("notes", [])]


# ---- evaluation -----------------------------------------------------------------------------


def lookup(result: dict[str, Any], path: str) -> Any:
    """The value at a dotted path; absent or null is Missing (the part is inconclusive)."""
    node: Any = result
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise Missing(f"the result has no {path}")
        node = node[key]
    if node is None:
        raise Missing(f"{path} is unknown (null)")
    return node


def _list(result: dict[str, Any], path: str) -> list[Any]:
    value = lookup(result, path)
    if not isinstance(value, list):
        raise Missing(f"{path} is not a list")
    return value


def _matches(item: Any, where: dict[str, Any]) -> bool:
    if not where:
        return True
    return isinstance(item, dict) and all(item.get(k) == v for k, v in where.items())


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Missing(f"{value!r} is not a number")
    return value


def figure(spec: Any, result: dict[str, Any], figures: dict[str, Any]) -> Any:
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
    if "len" in spec:
        return len(_list(result, spec["len"]))
    if "count" in spec:
        return sum(_matches(i, spec.get("where", {})) for i in _list(result, spec["count"]))
    if "join" in spec:
        items = [i for i in _list(result, spec["join"]) if _matches(i, spec.get("where", {}))]
        shown = [fill(spec["item"], i) if "item" in spec else str(i) for i in items]
        return ", ".join(shown) or spec.get("empty", "none")
    values = [_number(figure(item, result, figures)) for item in next(iter(spec.values()))]
    if "sum" in spec:
        return sum(values)
    if "diff" in spec:
        return values[0] - values[1]
    if values[1] == 0:
        raise Missing("a ratio divides by zero")
    return values[0] / values[1]


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
        return low <= _number(value) <= high
    op, other = next((k, v) for k, v in test.items() if k != "figure")
    other = figures[other["figure"]] if isinstance(other, dict) else other
    try:
        return COMPARISONS[op](value, other)
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


def judge_part(part: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """One part's verdict; its figures are kept so that every number in the evidence is traceable."""
    out: dict[str, Any] = {"needs": part["needs"], "rule": part["rule"]}
    measured = list(result.get("sides") or {})
    absent = [SIDE_TITLES[s] for s in part["needs"] if s not in measured]
    if absent:
        has = ", ".join(SIDE_TITLES.get(s, s) for s in measured) or "no side"
        return {**out, "verdict": INCONCLUSIVE,
                "evidence": f"{' and '.join(absent)} side not measured (this result has: {has})"}
    figures: dict[str, Any] = {}
    try:
        for name, spec in part.get("figures", {}).items():
            figures[name] = figure(spec, result, figures)
        verdict = REPRODUCED if passes(part["test"], figures) else NOT_REPRODUCED
        notes = [fill(n["text"], figures) for n in part.get("notes", []) if passes(n["when"], figures)]
    except Missing as exc:
        return {**out, "verdict": INCONCLUSIVE, "evidence": f"{exc}", "figures": figures}
    template = part["evidence"]
    if isinstance(template, dict):
        template = template["reproduced" if verdict == REPRODUCED else "not_reproduced"]
    return {**out, "verdict": verdict, "evidence": fill(template, figures), "notes": notes, "figures": figures}


def combine(verdicts: list[str]) -> str:
    """A claim the figures contradict anywhere is not reproduced; missing data is inconclusive."""
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return INCONCLUSIVE if INCONCLUSIVE in verdicts else REPRODUCED


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


def judge(result: dict[str, Any], claims: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One verdict per claim: {id, claim, verdict, rule, evidence, quotes, parts}."""
    verdicts = []
    for claim in claims if claims is not None else load():
        parts = [judge_part(part, result) for part in claim["parts"]]
        evidence = _unique([p["evidence"] for p in parts]) + _unique([n for p in parts for n in p.get("notes", [])])
        verdicts.append({
            "id": claim["id"],
            "claim": claim["title"],
            "verdict": combine([p["verdict"] for p in parts]),
            "rule": "; ".join(p["rule"] for p in parts),
            "evidence": "; ".join(evidence),
            "quotes": claim["quotes"],
            "parts": parts,
        })
    return verdicts
