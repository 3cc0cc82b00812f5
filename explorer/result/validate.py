"""A part of a result document checked against its model, as JSON gives it: what does not fit is
said field by field (where, what was expected, what was found), never as a traceback. Readers
(explorer/document.py) turn that into a usage error; the lifecycle, which wrote it, into a bug."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

EXPECTED = {
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "a list",
    "tuple_type": "a list",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "missing": "a value (the field is required)",
    "none_required": "null",
    "too_short": "more items",
    "too_long": "fewer items",
}


class Unfit(ValueError):
    """A document (or a part) that does not fit its model: `problems`, one line per field."""

    def __init__(self, model: str, problems: list[str]) -> None:
        self.model, self.problems = model, problems
        super().__init__(f"does not fit {model}: " + "; ".join(problems))


def validated(model: type[M], raw: Any) -> M:
    """`raw` (JSON-able data) as `model`, checked as JSON writes it (a tuple is a list); Unfit
    naming every field that does not fit."""
    try:
        return model.model_validate_json(json.dumps(raw))
    except ValidationError as exc:
        raise Unfit(model.__name__, [describe(error) for error in exc.errors()]) from None


def describe(error: Any) -> str:
    """'sides.runc.startup: expected an object, found the string "fast"'."""
    where = ".".join(str(part) for part in error["loc"] if not _union_member(part)) or "(top)"
    if error["type"] == "missing":
        return f"{where}: expected {EXPECTED['missing']}, found nothing (the field is absent)"
    if error["type"] == "extra_forbidden":
        return f"{where}: a field no explorer document has (found {found(error['input'])})"
    return f"{where}: expected {EXPECTED.get(error['type'], error['msg'])}, found {found(error['input'])}"


def _union_member(part: Any) -> bool:
    """pydantic names the member of a union it tried ('FioDetail', 'dict[str,float]'): not a field."""
    text = str(part)
    return text[:1].isupper() or "[" in text


def found(value: Any) -> str:
    """A value as a reader would name it: its JSON type, and the value where it is short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object ({', '.join(list(value)[:4])}{', ...' if len(value) > 4 else ''})"
    return type(value).__name__
