"""The document's claims, judged from a result's figures.

The claims are data (claims.yaml, validated on load) so that one is added or reworded without
code; this module only evaluates the small rule language they are written in: dotted paths,
a few list and arithmetic operations, comparisons. Nothing in the file is executed as Python.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field

from explorer.claims.rules import (
    COMPARISONS,
    FORMATS,
    PLACEHOLDER,
    Missing,
    View,
    figure,
    fill,
    passes,
)
from explorer.document import side_title
from explorer.errors import ExplorerError
from explorer.model import KINDS
from explorer.result import ClaimOnSide, FigureValue, JudgedClaim, JudgedPart, Result, SideRecord
from explorer.result.schema import resolves

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader where PyYAML has it

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MIXED = "mixed"  # an overall verdict only: the sides disagree
_NAME = {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$"}
_PATH = {"type": "string", "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$"}
_OPERAND = {"$ref": "#/$defs/operand"}
_WHERE = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}
_VALUE = {
    "anyOf": [
        {"type": ["string", "number", "boolean"]},
        {"type": "object", "required": ["figure"], "additionalProperties": False, "properties": {"figure": _NAME}},
    ]
}


def _only(key: str, value: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": [key], "additionalProperties": False, "properties": {key: value, **optional}}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "claims"],
    "properties": {
        "version": {"const": 2},
        "source": {"type": "string"},
        "claims": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/claim"}},
    },
    "$defs": {
        "claim": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "title", "quotes", "parts"],
            "properties": {
                "id": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*$"},
                "title": {"type": "string", "minLength": 1},
                "short": {"type": "string", "minLength": 1, "maxLength": 24},
                "qualifier": {"type": "string", "minLength": 1},
                "quotes": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "parts": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/part"}},
            },
        },
        "part": {
            "type": "object",
            "additionalProperties": False,
            "required": ["rule", "test", "evidence"],
            "oneOf": [{"required": ["kind"]}, {"required": ["compare"]}],
            "properties": {
                "kind": {"enum": list(KINDS)},
                "compare": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "uniqueItems": True,
                    "items": {"enum": list(KINDS)},
                },
                "rule": {"type": "string", "minLength": 1},
                "figures": {"type": "object", "propertyNames": _NAME, "additionalProperties": _OPERAND},
                "test": {"$ref": "#/$defs/test"},
                "evidence": {"$ref": "#/$defs/template"},
                "brief": {"$ref": "#/$defs/template"},
                "notes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["when", "text"],
                        "properties": {"when": {"$ref": "#/$defs/test"}, "text": {"type": "string"}},
                    },
                },
            },
        },
        "template": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["reproduced", "not_reproduced"],
                    "properties": {"reproduced": {"type": "string"}, "not_reproduced": {"type": "string"}},
                },
            ]
        },
        "operand": {
            "anyOf": [
                _PATH,
                _NAME,
                {"type": "number"},
                _only("path", _PATH, default={}),
                _only("first", {"type": "array", "minItems": 1, "items": _OPERAND}, default={}),
                _only("len", _PATH),
                _only("count", _PATH, where=_WHERE),
                _only("join", _PATH, where=_WHERE, item={"type": "string"}, empty={"type": "string"}),
                _only("sum", {"type": "array", "minItems": 1, "items": _OPERAND}),
                _only("diff", {"type": "array", "minItems": 2, "maxItems": 2, "items": _OPERAND}),
                _only("ratio", {"type": "array", "minItems": 2, "maxItems": 2, "items": _OPERAND}),
            ]
        },
        "test": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["figure"],
                    "additionalProperties": False,
                    "minProperties": 2,
                    "maxProperties": 2,
                    "properties": {
                        "figure": _NAME,
                        "between": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}},
                        **{op: _VALUE for op in COMPARISONS},
                    },
                },
                _only("all", {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/test"}}),
                _only("any", {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/test"}}),
                _only("not", {"$ref": "#/$defs/test"}),
            ]
        },
    },
}


class ClaimsError(ExplorerError):
    """claims.yaml does not validate: a broken claims file would judge wrongly, so stop."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = problems
        text = f"invalid claims file {source}:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text, hint="see the format described at the top of explorer/claims/claims.yaml")


# ---- the claims file, typed once validated ------------------------------------------------

Template = str | dict[str, str]  # one text, or {reproduced: ..., not_reproduced: ...}


class Note(BaseModel):
    """A caveat added to the evidence when its test passes."""

    model_config = ConfigDict(frozen=True)
    when: dict[str, Any]  # a test of the rule language (SCHEMA's $defs/test)
    text: str


class Part(BaseModel):
    """One rule of a claim, judged on every measured side of `kind` (or the `compare` pair's second)."""

    model_config = ConfigDict(frozen=True)
    kind: str | None = None
    compare: list[str] | None = None
    rule: str
    figures: dict[str, Any] = Field(default_factory=dict)  # name -> an operand of the rule language
    test: dict[str, Any]
    evidence: Template
    brief: Template | None = None
    notes: list[Note] = Field(default_factory=list)

    @property
    def roots(self) -> tuple[str, ...]:
        """The names its paths may start with: the side(s) it reads, and the host."""
        return (*(self.compare or ["side"]), "host")

    @property
    def kinds(self) -> list[str]:
        return self.compare if self.compare is not None else [self.kind or ""]

    @property
    def words(self) -> str:
        """'container: its rule', 'container vs vm: its rule'."""
        return f"{' vs '.join(self.compare) if self.compare else self.kind}: {self.rule}"


class Claim(BaseModel):
    """One of the document's claims, as claims.yaml words it."""

    model_config = ConfigDict(frozen=True)
    id: str
    title: str
    short: str | None = None
    qualifier: str | None = None
    quotes: list[str]
    parts: list[Part]


# ---- loading and validation --------------------------------------------------------------


def load(path: str | Path | None = None) -> list[Claim]:
    """The claims from `path`, or the bundled claims.yaml; every problem reported at once."""
    if path is None:
        return _bundled()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ClaimsError([f"cannot read it: {exc.strerror}"], str(path)) from None
    return _parse(text, str(path))


@functools.lru_cache(maxsize=1)
def _bundled() -> list[Claim]:
    text = resources.files("explorer.claims").joinpath("claims.yaml").read_text()
    return _parse(text, "explorer/claims/claims.yaml")


def _parse(text: str, source: str) -> list[Claim]:
    try:
        doc = yaml.load(text, Loader=SAFE_LOADER)  # safe: no Python objects; libyaml's, 8x faster here
    except yaml.YAMLError as exc:
        raise ClaimsError([f"not YAML: {exc}"], source) from None
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        raise ClaimsError(problems, source)
    typed = [Claim.model_validate(claim) for claim in doc["claims"]]
    problems = [p for claim in typed for p in _check_names(claim)]
    ids = [c.id for c in typed]
    problems += [f"claim id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise ClaimsError(problems, source)
    return typed


def predefined(part: Part) -> list[str]:
    """Figures every part has without defining them: the titles of the sides it reads."""
    return [f"{root}_title" for root in part.roots[:-1]]


def _check_names(claim: Claim) -> list[str]:
    """Names the schema cannot check: figures used in tests and templates must be defined,
    and paths must start at a side the part reads (or the host) and name a field of the
    result document's models."""
    problems = []
    for index, part in enumerate(claim.parts):
        where = f"claims/{claim.id}/parts/{index}"
        defined: list[str] = predefined(part)
        for name, spec in part.figures.items():
            problems += [
                f"{where}/figures/{name}: {r!r} is not a figure defined before it"
                for r in _references(spec)
                if r not in defined
            ]
            problems += [
                f"{where}/figures/{name}: path {p!r} must start with one of {', '.join(part.roots)}"
                for p in _paths(spec)
                if p.split(".")[0] not in part.roots
            ]
            problems += [
                f"{where}/figures/{name}: path {p!r} names no field of the result document (explorer/result/)"
                for p in _paths(spec)
                if p.split(".")[0] in part.roots and not resolves(p)
            ]
            defined.append(name)
        tests = [part.test, *(note.when for note in part.notes)]
        problems += [f"{where}/test: unknown figure {n!r}" for t in tests for n in _test_names(t) if n not in defined]
        for name, fmt in (m.groups() for t in _templates(part) for m in PLACEHOLDER.finditer(t)):
            if name not in defined:
                problems.append(f"{where}: template uses unknown figure {name!r}")
            if fmt and fmt not in FORMATS:
                problems.append(f"{where}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return problems


def _references(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [] if "." in spec else [spec]
    if isinstance(spec, dict):
        for key in ("sum", "diff", "ratio", "first"):
            if key in spec:
                return [r for item in spec[key] for r in _references(item)]
    return []


def _paths(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [spec] if "." in spec else []
    if isinstance(spec, dict):
        return [
            p
            for value in spec.values()
            for item in (value if isinstance(value, list) else [value])
            for p in _paths(item)
            if isinstance(item, (str, dict))
        ]
    return []


def _test_names(test: dict[str, Any]) -> list[str]:
    if "figure" in test:
        value = next(v for k, v in test.items() if k != "figure")
        return [test["figure"], *([value["figure"]] if isinstance(value, dict) else [])]
    inner = test.get("all") or test.get("any") or [test["not"]]
    return [name for t in inner for name in _test_names(t)]


def _templates(part: Part) -> list[str]:
    texts = []
    for template in (part.evidence, part.brief or ""):
        texts += [template] if isinstance(template, str) else list(template.values())
    return texts + [note.text for note in part.notes]


def _chosen(template: str | dict[str, str], verdict: str) -> str:
    """A template, or the one of its pair that fits the verdict."""
    if isinstance(template, dict):
        return template["reproduced" if verdict == REPRODUCED else "not_reproduced"]
    return template


def _kept(value: Any) -> FigureValue:
    """A figure as the judged claim keeps it: a number, a flag, a text or a list of texts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return str(value)


def judge_part(part: Part, view: View, titles: dict[str, str]) -> JudgedPart:
    """One part's verdict on `view` (the side(s) it reads, by root name, and the host); its
    figures are kept so that every number in the evidence is traceable."""
    figures: dict[str, Any] = dict(titles)

    def judged(verdict: str, evidence: str, brief: str, notes: list[str]) -> JudgedPart:
        kept = {name: _kept(value) for name, value in figures.items()}
        return JudgedPart(
            rule=part.rule,
            kind=None if part.compare else part.kind,
            compare=part.compare,
            verdict=verdict,
            evidence=evidence,
            brief=brief,
            notes=notes,
            figures=kept,
        )

    impossible = impossible_timelines(part, view, titles)
    if impossible:
        return judged(INCONCLUSIVE, impossible, impossible, [])
    try:
        for name, spec in part.figures.items():
            figures[name] = figure(spec, view, figures)
        verdict = REPRODUCED if passes(part.test, figures) else NOT_REPRODUCED
        notes = [fill(n.text, figures) for n in part.notes if passes(n.when, figures)]
    except Missing as exc:
        who = " and ".join(titles.values())
        return judged(INCONCLUSIVE, f"{who}: {exc}", str(exc), [])
    evidence = fill(_chosen(part.evidence, verdict), figures)
    brief = fill(_chosen(part.brief, verdict), figures) if part.brief is not None else evidence
    return judged(verdict, evidence, brief, notes)


def impossible_timelines(part: Part, view: View, titles: dict[str, str]) -> str | None:
    """Why the part cannot read startup figures: a side whose milestones happened in an
    impossible order (a readiness check a proxy fooled), or None."""
    read = {p.split(".")[0] for spec in part.figures.values() for p in _paths(spec) if ".startup." in p}
    found = []
    for root in sorted(read):
        side = view.get(root)
        startup = side.startup if isinstance(side, SideRecord) else None
        check = startup.timeline if startup is not None else None
        if check is not None and not check.ok:
            title = titles.get(f"{root}_title", root)
            found.append(f"{title}'s timeline is impossible ({'; '.join(check.problems[:2])})")
    return "; ".join(found) + ": its startup figures are not used" if found else None


def combine(verdicts: list[str]) -> str:
    """One side's verdict from its parts: a claim the figures contradict anywhere is not
    reproduced; missing data is inconclusive."""
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return INCONCLUSIVE if INCONCLUSIVE in verdicts else REPRODUCED


def overall(verdicts: list[str]) -> str:
    """A claim's verdict over its sides: where some sides reproduce it and others contradict
    it, it is mixed (the per-side verdicts say which)."""
    if REPRODUCED in verdicts and NOT_REPRODUCED in verdicts:
        return MIXED
    return combine(verdicts) if verdicts else INCONCLUSIVE


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


def _views(part: Part, result: Result) -> list[tuple[str, View, dict[str, str]]]:
    """(judged side, view, titles) for every measured side the part applies to."""
    sides, host = result.sides, result.host
    if part.compare is None:
        return [
            (name, {"side": side, "host": host}, {"side_title": side_title(side, name)})
            for name, side in sides.items()
            if side.kind == part.kind
        ]
    ref_kind, judged_kind = part.compare
    ref = next((name for name, side in sides.items() if side.kind == ref_kind), None)
    if ref is None:
        return []
    return [
        (
            name,
            {ref_kind: sides[ref], judged_kind: side, "host": host},
            {f"{ref_kind}_title": side_title(sides[ref], ref), f"{judged_kind}_title": side_title(side, name)},
        )
        for name, side in sides.items()
        if side.kind == judged_kind
    ]


def judge_claim(claim: Claim, result: Result) -> JudgedClaim:
    """Per measured side, its parts' verdicts; overall, where the sides agree or not."""
    per_side: dict[str, list[JudgedPart]] = {}
    for part in claim.parts:
        for name, view, titles in _views(part, result):
            per_side.setdefault(name, []).append(judge_part(part, view, titles))
    needed = {k for p in claim.parts for k in p.kinds}
    measured = {side.kind for side in result.sides.values()}
    missing = sorted(needed - measured)
    sides = {}
    for name in (n for n in result.sides if n in per_side):  # the result's order
        parts = per_side[name]
        evidence = _unique([p.evidence for p in parts]) + _unique([n for p in parts for n in p.notes])
        verdict = combine([p.verdict for p in parts])
        departing = [p.evidence for p in parts if p.verdict == verdict] if verdict != REPRODUCED else []
        sides[name] = ClaimOnSide(
            title=side_title(result.sides[name], name),
            kind=result.sides[name].kind,
            verdict=verdict,
            evidence="; ".join(evidence),
            why="; ".join(_unique(departing)),
            brief="; ".join(_unique([p.brief for p in parts if p.verdict == verdict])),
            parts=parts,
        )
    verdict = overall([s.verdict for s in sides.values()] + [INCONCLUSIVE] * bool(missing))
    return JudgedClaim(
        id=claim.id,
        claim=claim.title,
        short=claim.short or claim.title,
        qualifier=claim.qualifier,
        quotes=claim.quotes,
        verdict=verdict,
        summary=summary(sides, missing, claim.qualifier),
        rule="; ".join(_unique([p.words for p in claim.parts])),
        missing_kinds=missing,
        sides=sides,
    )


def summary(sides: dict[str, ClaimOnSide], missing: list[str], qualifier: str | None) -> str:
    """'reproduced for runc, microvm; not reproduced for gvisor (its evidence)': the sides
    grouped by verdict, with the evidence of those that depart from the claim."""
    groups: dict[str, list[str]] = {}
    for name, side in sides.items():
        groups.setdefault(side.verdict, []).append(name)
    parts = []
    for verdict in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE):
        names = groups.get(verdict, [])
        if not names:
            continue
        text = f"{verdict} for {', '.join(names)}"
        if verdict != REPRODUCED:
            text += " (" + "; ".join(sides[n].why for n in names) + ")"
        parts.append(text)
    parts += [f"no {kind} side measured" for kind in missing]
    line = "; ".join(parts)
    if qualifier and REPRODUCED in groups and NOT_REPRODUCED in groups:
        line += f'. The document qualifies it: "{qualifier} ..."'
    return line


def judge(result: Result, claims: list[Claim] | None = None) -> list[JudgedClaim]:
    """One verdict per claim: {id, claim, verdict, summary, rule, quotes, sides: {name: ...}}."""
    return [judge_claim(claim, result) for claim in (claims if claims is not None else load())]


def judged(result: Result, claims: list[Claim] | None = None) -> Result:
    """The result with its claims judged afresh from its figures, as every reader shows it."""
    return result.model_copy(update={"claims": judge(result, claims)})
