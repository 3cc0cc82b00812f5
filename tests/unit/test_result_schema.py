"""The result document's schema (explorer/result.py) is the contract between the measuring half
and the reading half: every saved fixture fits it, a document that does not is refused naming
the field, and every path that claims.yaml and the tables read is a field of it, so renaming a
figure breaks this test rather than a verdict."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from explorer import claims, document, result
from explorer.output import compare, glance, report

FIXTURES = Path(__file__).parent / "fixtures"
SAVED = sorted(FIXTURES.glob("*.json"))


def saved(path: Path) -> dict[str, Any]:
    return document.upgraded(json.loads(path.read_text()))


@pytest.mark.parametrize("path", SAVED, ids=lambda p: p.stem)
def test_every_saved_result_fits_the_schema(path):
    assert result.problems(saved(path)) == []


def test_a_field_of_the_wrong_type_is_named():
    doc = saved(FIXTURES / "both.json")
    doc["sides"]["container"]["startup"]["summary"]["ready_s"]["median"] = "fast"
    (problem,) = result.problems(doc)
    assert problem.startswith("sides/container/startup/summary/ready_s/median: 'fast' is not of type")


# ---- every path a reader takes is declared ----------------------------------------------------


class Recorded(dict):
    """A document that notes every field read from it, as a dotted path with * for a map's keys
    (by the schema) and [] for a list's items."""

    def __init__(self, data: dict[str, Any], path: str, seen: set[str]) -> None:
        super().__init__(data)
        self.path, self.seen = path, seen

    def _key(self, key: str) -> str:
        here = f"{self.path}.{key}" if self.path else key
        if not result.declares(here) and self.path and result.declares(f"{self.path}.*"):
            return f"{self.path}.*"
        return here

    def _wrap(self, key: str, value: Any) -> Any:
        where = self._key(key)
        self.seen.add(where)
        return wrap(value, where, self.seen)

    def __getitem__(self, key):
        return self._wrap(key, super().__getitem__(key))

    def get(self, key, default=None):
        if key in self:
            return self[key]
        self.seen.add(self._key(key))
        return default

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def values(self):
        return [self[k] for k in self.keys()]

    def __iter__(self):
        return iter(list(self.keys()))


def wrap(value: Any, path: str, seen: set[str]) -> Any:
    if isinstance(value, dict) and not isinstance(value, Recorded):
        return Recorded(value, path, seen)
    if isinstance(value, list):
        return [wrap(item, f"{path}.[]", seen) for item in value]
    return value


def _read_by_the_tables(doc: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    doc = copy.deepcopy(doc)
    doc["claims"] = claims.judge(doc)
    recorded = Recorded(doc, "", seen)
    for fmt in ("table", "markdown"):
        report.render(recorded, fmt, detail=True)
    glance.key_figures(recorded, 100)
    compare.render_compare([("a", recorded), ("b", recorded)], "table")
    return seen


@pytest.mark.parametrize("path", SAVED, ids=lambda p: p.stem)
def test_every_path_the_tables_read_is_declared(path):
    undeclared = sorted(p for p in _read_by_the_tables(saved(path)) if not result.declares(p))
    assert undeclared == []


def _claims_paths() -> set[str]:
    found = set()
    for claim in claims.load():
        for part in claim["parts"]:
            for spec in part.get("figures", {}).values():
                for dotted in claims._paths(spec):
                    root, rest = dotted.split(".", 1)
                    found.add(f"host.{rest}" if root == "host" else f"sides.*.{rest}")
    return found


def test_every_path_claims_yaml_reads_is_declared():
    paths = _claims_paths()
    assert len(paths) > 40  # the reader found the claims' paths
    assert sorted(p for p in paths if not result.declares(p)) == []


def test_a_renamed_figure_is_caught():
    assert result.declares("sides.*.startup.summary.ready_s.median")
    assert not result.declares("sides.*.startup.summary_renamed.ready_s.median")
    assert not result.declares("sides.*.image.contents_bytes")
