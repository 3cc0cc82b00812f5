"""The claims as judged from a result's figures (explorer/claims/): per claim its verdict over
the sides, and per side the verdict of each part with the figures it read, so that every number
in the evidence is traceable."""

from __future__ import annotations

from pydantic import Field

from explorer.result.base import Record

# A figure a claim's part computed: a number, a flag, a text (a title, a list joined), or a
# list read whole from the result
FigureValue = bool | int | float | str | list[str] | None


class JudgedPart(Record):
    rule: str
    kind: str | None = None
    compare: list[str] | None = None
    verdict: str
    evidence: str
    brief: str
    notes: list[str] = Field(default_factory=list)
    figures: dict[str, FigureValue] = Field(default_factory=dict)


class ClaimOnSide(Record):
    title: str
    kind: str | None = None
    verdict: str
    evidence: str
    why: str
    brief: str
    parts: list[JudgedPart] = Field(default_factory=list)


class JudgedClaim(Record):
    id: str
    claim: str
    short: str
    qualifier: str | None = None
    quotes: list[str]
    verdict: str
    summary: str
    rule: str
    missing_kinds: list[str] = Field(default_factory=list)
    sides: dict[str, ClaimOnSide] = Field(default_factory=dict)
