"""The result document is defined once, as typed models (explorer/result/): the shipped JSON
Schema is generated from them, every saved version still reads (upgraded), a document that does
not fit is refused naming the field, and every path claims.yaml reads is a field of the models,
so renaming a figure breaks this test (or the type checker) rather than a verdict."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from explorer import claims, document, result
from explorer.errors import UsageError
from explorer.result.schema import declares, document_schema, resolves, schema_text

FIXTURES = Path(__file__).parent / "fixtures"
SAVED = sorted(FIXTURES.glob("*.json"))
ONE_OF_EACH = {
    "explorer.result/1": "both.json",
    "explorer.result/2": "fio-runc-microvm.json",
    "explorer.result/3": "eight-sides.json",
}


@pytest.mark.parametrize("path", SAVED, ids=lambda p: p.stem)
def test_every_saved_result_reads(path: Path):
    parsed = document.load_result(path)
    assert parsed.schema_ == result.RESULT and parsed.schema_version == result.SCHEMA_VERSION
    assert parsed.sides and all(side.name == name for name, side in parsed.sides.items())


@pytest.mark.parametrize(("version", "name"), ONE_OF_EACH.items())
def test_one_of_each_older_version_is_upgraded(version: str, name: str):
    raw = json.loads((FIXTURES / name).read_text())
    assert raw["schema"] == version
    parsed = document.load_result(FIXTURES / name)
    assert parsed.upgraded_from == version
    assert list(parsed.sides) == list(raw["sides"])
    # what a version-4 reader cannot take is left out (the engines' state), the record kept
    for side in parsed.sides.values():
        assert side.kind in ("container", "vm") and side.title


def test_the_current_version_reads_what_it_writes():
    parsed = document.load_result(FIXTURES / "eight-sides.json")
    again = document.parse_result(json.loads(parsed.model_dump_json(by_alias=True)))
    assert again == parsed and again.upgraded_from == "explorer.result/3"


def test_a_current_result_as_make_demo_kept_it_round_trips_byte_for_byte():
    """eight-sides-v4.json: `make demo`'s eight sides with the inside probe, written by the models."""
    text = (FIXTURES / "eight-sides-v4.json").read_text()
    parsed = document.parse_result(json.loads(text))
    assert parsed.schema_ == result.RESULT and parsed.upgraded_from is None
    assert json.loads(parsed.model_dump_json(by_alias=True)) == json.loads(text)
    assert parsed.inside_native is not None and all(side.inside for side in parsed.sides.values())


def test_a_field_of_the_wrong_type_is_named(tmp_path: Path):
    raw = json.loads((FIXTURES / "both.json").read_text())
    raw["sides"]["container"]["startup"]["summary"]["ready_s"]["median"] = "fast"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(UsageError) as caught:
        document.load_result(path)
    assert 'sides.container.startup.summary.ready_s.median: expected a number, found the string "fast"' in str(
        caught.value
    )


# ---- the shipped schema is the models' ------------------------------------------------------


def shipped() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("explorer").joinpath("result.schema.json").read_text())
    return loaded


def test_the_shipped_schema_is_generated_from_the_models():
    text = resources.files("explorer").joinpath("result.schema.json").read_text()
    assert text == schema_text(), "explorer/result.schema.json is stale: python -m explorer.result > it"
    assert shipped()["$id"] == result.RESULT


def _nodes(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _nodes(value)
    elif isinstance(node, list):
        for value in node:
            found += _nodes(value)
    return found


def test_every_object_node_of_the_schema_has_a_type_and_no_field_accepts_anything():
    nodes = _nodes(shipped())
    objects = [n for n in nodes if "properties" in n or "additionalProperties" in n]
    assert len(objects) > 80
    assert [n.get("title") for n in objects if "type" not in n] == []
    assert [n for n in nodes if n == {}] == []  # no subschema that accepts any value


def test_a_document_the_schema_validates_is_one_the_models_read():
    import jsonschema

    raw = json.loads(document.load_result(FIXTURES / "eight-sides.json").model_dump_json(by_alias=True))
    jsonschema.Draft202012Validator(document_schema()).validate(raw)
    raw["sides"]["runc"]["startup"] = "fast"
    assert not jsonschema.Draft202012Validator(document_schema()).is_valid(raw)


# ---- every path a claim reads is a field ------------------------------------------------------


def _claims_paths() -> set[str]:
    return {
        dotted
        for claim in claims.load()
        for part in claim.parts
        for spec in part.figures.values()
        for dotted in claims._paths(spec)
    }


def test_every_path_claims_yaml_reads_is_a_field_of_the_models():
    paths = _claims_paths()
    assert len(paths) > 40  # the reader found the claims' paths
    assert sorted(p for p in paths if not resolves(p)) == []


def test_every_field_of_the_models_is_resolved():
    """A field whose type is still a forward reference would make `declares` miss its paths."""
    from pydantic import BaseModel

    models = [m for name in result.__all__ if isinstance(m := getattr(result, name), type) and issubclass(m, BaseModel)]
    assert [
        f"{m.__name__}.{n}" for m in models for n, f in m.model_fields.items() if "ForwardRef" in repr(f.annotation)
    ] == []


def test_a_renamed_figure_is_caught():
    assert declares("sides.*.startup.summary.ready_s.median")
    assert declares("sides.*.load.paths.*.rounds.[].ops_s")
    assert not declares("sides.*.startup.summary_renamed.ready_s.median")
    assert not declares("sides.*.image.contents_bytes")
    assert not resolves("side.image.contents_bytes") and not resolves("elsewhere.image.content_bytes")


def test_a_claims_file_that_reads_no_field_is_refused(tmp_path: Path):
    path = tmp_path / "claims.yaml"
    path.write_text(
        "version: 2\nclaims:\n  - id: renamed\n    title: t\n    quotes: [q]\n    parts:\n"
        "      - kind: container\n        rule: r\n        figures: {x: side.image.contents_bytes}\n"
        "        test: {figure: x, gt: 0}\n        evidence: e\n"
    )
    with pytest.raises(claims.ClaimsError, match="names no field of the result document"):
        claims.load(path)
