"""Running a scenario's standard load (its words: explorer/loadspec.py): the client for each
kind of load, and the one way from a LoadSpec to the client that runs it."""

from __future__ import annotations

from explorer.load.clients import Client, LineLoop, LoadToolMissing, MongoLoop, PgBench, RedisBenchmark, Wrk
from explorer.load.io import Fio
from explorer.loadspec import LoadSpec

__all__ = ["CLIENTS", "Client", "LoadToolMissing", "client_for"]

CLIENTS: dict[str, type[Client]] = {cls.KIND: cls for cls in (RedisBenchmark, PgBench, Wrk, MongoLoop, LineLoop, Fio)}


def client_for(spec: LoadSpec) -> Client:
    """The client that runs `spec`, with its parameters."""
    return CLIENTS[spec.kind](**dict(spec.params))
