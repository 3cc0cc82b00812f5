"""The base of every record in a result document: strict (a number is a number, a list a list),
closed (a field no model declares is an error, so a producer's renamed figure fails where it is
written), and optional only where a model says so."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A part of a result document, as written and as read."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)


class Spread(Record):
    """A figure over repeats: its median, its range and how many values it is drawn from."""

    n: int
    min: float
    median: float
    max: float
    stdev: float | None = None


class Storage(Record):
    """Where a side's (or the native reference's) disk I/O lands on the host, in words."""

    path: str
    detail: str | None = None
    driver: str | None = None
    backing_filesystem: str | None = None
    overlay: str | None = None
    overlay2: str | None = None
    read_from: str | None = None
    # a VM's disk
    bus: str | None = None
    cache_mode: str | None = None
    cache_mode_means: str | None = None
    file: str | None = None
    format: str | None = None
    guest_filesystem: str | None = None
    # the native reference's host filesystem
    filesystem: str | None = None
    mount: str | None = None
    device: str | None = None
    directory: str | None = None
