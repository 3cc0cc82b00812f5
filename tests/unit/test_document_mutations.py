"""Every malformed document is a clear error, as a property over every field of a real kept
result: each field in turn has its type swapped, is removed and is made null, and `report`, `report --html` and `compare` end in exit 0 (the document still fits: an
optional figure gone, one entry of a map fewer) or exit 2 naming the field, what was expected and
what was found; never in a traceback.

A field is one of the document's schema paths (sides.*.load.rounds.[].ops_s: one field, whichever
side and round); its first occurrence in the document is changed. A change the models refuse is
checked one by one (the message names the field); the commands run on such documents in groups
(the loader refuses the group as it refuses each). Changes the models accept are rendered by the
three commands in groups of changes that do not overlap (none inside another), in two different
groupings, so that one change cannot hide another's effect; a group that fails is taken apart to
name the change that made it fail."""

from __future__ import annotations

import json
import random
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from explorer.errors import EXIT_USAGE
from explorer.result import Result, SideRecord
from explorer.result.validate import Unfit, validated
from tests.unit.test_report_cli import invoke

FIXTURE = Path(__file__).parent / "fixtures" / "eight-sides-v4.json"  # make demo's, inside probe included
GROUP = 100  # changes rendered together
Path_ = tuple[str | int, ...]

pytest.importorskip("matplotlib")


def kept() -> dict[str, Any]:
    """The real kept result (make demo's eight sides), as explorer writes it today, with its long
    lists and maps cut to their first few entries (every field is still there, on every side and
    path; a change is then checked in milliseconds, not tens of them)."""
    from explorer import claims, document

    judged = claims.judged(document.load_result(FIXTURE))  # as `run` keeps it: its claims judged
    return trimmed(json.loads(judged.model_dump_json(by_alias=True)), ())


WHOLE = ("sides", "paths")  # maps kept whole: every side, every load path


def trimmed(node: Any, here: Path_) -> Any:
    if isinstance(node, list):
        return [trimmed(item, (*here, i)) for i, item in enumerate(node[:2])]
    if isinstance(node, dict):
        keys = list(node)
        first = field_of((*here, keys[0])) if keys else None
        if first is not None and first.endswith("*") and here[-1:] not in [(w,) for w in WHOLE]:
            keys = keys[:3]
        return {key: trimmed(node[key], (*here, key)) for key in keys}
    return node


def _paths(node: Any, here: Path_ = ()) -> Iterator[Path_]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*here, key)
            yield from _paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*here, index)
            yield from _paths(value, (*here, index))


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg) if m is not type(None)]
    return [annotation]


def field_of(path: Path_) -> str | None:
    """The schema path of a document path: a model's field by name, a map's entry as *, a list's
    item as [] ("sides.*.startup.repeats.[].*"); None where the models name no such field."""
    node: Any = Result
    shown: list[str] = []
    for segment in path:
        for member in _members(node):
            origin = typing.get_origin(member)
            if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(segment, str):
                found = next((f for n, f in member.model_fields.items() if segment in (n, f.alias)), None)
                if found is not None:
                    node, label = found.annotation, segment
                    break
            elif origin is dict and isinstance(segment, str):
                node, label = typing.get_args(member)[1], "*"
                break
            elif origin in (list, tuple) and isinstance(segment, int):
                args = typing.get_args(member)
                node, label = (args[0] if origin is list else args[min(segment, len(args) - 1)]), "[]"
                break
        else:
            return None
        shown.append(label)
    return ".".join(shown)


def fields(doc: dict[str, Any]) -> dict[str, Path_]:
    """Every field of the document, with the document path of its first occurrence."""
    first: dict[str, Path_] = {}
    for path in _paths(doc):
        name = field_of(path)
        assert name is not None, f"{path} is in a kept result but in no model"
        first.setdefault(name, path)
    return first


def swapped(value: Any) -> Any:
    """A value of another JSON type than `value`'s."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "12 ms"
    if isinstance(value, str):
        return 12
    if isinstance(value, list):
        return {"swapped": 1}
    if isinstance(value, dict):
        return ["swapped"]
    return 12  # null: a number


@dataclass(frozen=True)
class Change:
    field: str
    path: Path_
    how: str  # swap | remove | null

    def apply_to(self, parent: Any) -> None:
        """The change made in the object or list that holds the field."""
        last = self.path[-1]
        if self.how == "remove":
            parent.pop(last)
        elif self.how == "null":
            parent[last] = None
        else:
            parent[last] = swapped(parent[last])

    def where(self) -> str:
        """The dotted path a message names."""
        return ".".join(str(s) for s in self.path)

    def inside(self, other: Change) -> bool:
        return self.path[: len(other.path)] == other.path or other.path[: len(self.path)] == self.path


def changed(base: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
    """`base` with `changes` applied (base itself untouched: what lies on a change's path is
    copied, the rest shared), deepest first, so a removal from a list keeps the others' indices."""
    doc = dict(base)
    for change in sorted(changes, key=lambda c: [str(s).rjust(12) for s in c.path], reverse=True):
        parent: Any = doc
        for segment in change.path[:-1]:
            child = parent[segment]
            parent[segment] = child = list(child) if isinstance(child, list) else dict(child)
            parent = child
        change.apply_to(parent)
    return doc


def run_all(doc: dict[str, Any], tmp: Path) -> list[tuple[str, int, str]]:
    """report, report --html and compare on `doc`: (command, exit code, stderr) of each; an
    exception that is not an exit (a traceback) propagates."""
    path, page = tmp / "changed.json", tmp / "changed.html"
    path.write_text(json.dumps(doc))
    out = []
    for name, args in (
        ("report", ["report", str(path), "--detail"]),
        ("report --html", ["report", str(path), "--html", str(page)]),
        ("compare", ["compare", str(path), str(FIXTURE)]),
    ):
        code, _stdout, err = invoke(*args)
        out.append((name, code, err))
    return out


def groups(changes: list[Change], seed: int) -> list[list[Change]]:
    """`changes` packed into groups of at most GROUP, none inside another in its group."""
    order = list(changes)
    random.Random(seed).shuffle(order)
    packed: list[list[Change]] = []
    for change in order:
        home = next((g for g in packed if len(g) < GROUP and not any(change.inside(o) for o in g)), None)
        if home is None:
            packed.append([change])
        else:
            home.append(change)
    return packed


def test_every_field_swapped_removed_or_null_is_exit_0_or_2_and_never_a_traceback(tmp_path: Path):
    base = kept()
    found = fields(base)
    assert len(found) > 500  # the real result's fields, every side's
    refused: list[Change] = []
    accepted: list[Change] = []
    seen: set[int] = set()  # a null and a removal of an optional field read alike: rendered once
    for name, path in found.items():
        for how in ("swap", "remove", "null"):
            change = Change(name, path, how)
            try:
                parsed = checked(base, change)
            except Unfit as exc:
                # refused: the message names the field (or, for a removed entry of a list, the list)
                named = change.where()
                assert any(p.startswith(named) or named.startswith(p.split(":")[0]) for p in exc.problems), (
                    named,
                    exc.problems[:3],
                )
                refused.append(change)
            else:
                digest = hash(parsed)
                if digest not in seen:
                    seen.add(digest)
                    accepted.append(change)
    assert refused and accepted
    for group in groups(refused, seed=1):
        for command, code, err in run_all(changed(base, group), tmp_path):
            assert code == EXIT_USAGE and "Error: " in err and "Traceback" not in err, (command, err[-500:])
    failing = []
    for seed in (1, 2):
        for group in groups(accepted, seed):
            try:
                results = run_all(changed(base, group), tmp_path)
                bad = [(command, code, err[-300:]) for command, code, err in results if code not in (0, EXIT_USAGE)]
            except Exception as exc:  # noqa: BLE001 - a traceback, whatever its type: find which change made it
                bad = [("exception", -1, repr(exc))]
            if bad:
                failing += culprits(base, group, tmp_path) or group[:1]
    assert failing == [], [f"{c.how} {c.where()}" for c in failing[:10]]


def checked(base: dict[str, Any], change: Change) -> str:
    """The changed document as the models read it (its JSON); Unfit naming what does not fit.
    A change in a side is checked on that side's record alone (the same models; the document's
    other sides, unchanged, fit already), its messages named from the document's top."""
    doc = changed(base, [change])
    if change.path[:1] == ("sides",) and len(change.path) > 2:
        side = change.path[1]
        try:
            return validated(SideRecord, doc["sides"][side]).model_dump_json()
        except Unfit as exc:
            raise Unfit(exc.model, [f"sides.{side}.{p}" for p in exc.problems]) from None
    return validated(Result, {**doc, "sides": {}} if change.path[:1] != ("sides",) else doc).model_dump_json()


def _fails(base: dict[str, Any], group: list[Change], tmp: Path) -> bool:
    try:
        return any(code not in (0, EXIT_USAGE) for _, code, _ in run_all(changed(base, group), tmp))
    except Exception:  # noqa: BLE001 - a traceback, whatever its type
        return True


def culprits(base: dict[str, Any], group: list[Change], tmp: Path) -> list[Change]:
    """The changes of a failing group that fail alone, found by halving it."""
    if len(group) == 1:
        return group if _fails(base, group, tmp) else []
    half = len(group) // 2
    found = []
    for part in (group[:half], group[half:]):
        if _fails(base, part, tmp):
            found += culprits(base, part, tmp)
    return found


def test_a_string_startup_is_named(tmp_path: Path):
    base = kept()
    base["sides"]["runc"]["startup"] = "fast"
    for command, code, err in run_all(base, tmp_path):
        assert code == EXIT_USAGE, command
        assert 'sides.runc.startup: expected an object, found the string "fast"' in err
        assert "Traceback" not in err
