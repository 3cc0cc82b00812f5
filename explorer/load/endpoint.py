"""What a load phase aims at and how its time is kept: the Endpoint a client reaches (and the
host processes that serve it), the phase's Settings, and the Split of its seconds by part.
Both the rounds (rounds.py) and their traced part (traced.py) speak of these."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the parts of a load phase, in the order they happen; `needed`: the rounds and the idle window
SPLIT_PARTS = (
    "prepare_s",
    "calibration_s",
    "measured_rounds_s",
    "idle_window_s",
    "discovery_s",
    "traced_rounds_s",
    "perf_start_s",
    "perf_stop_s",
    "keeper_s",
)
NEEDED = ("measured_rounds_s", "traced_rounds_s", "idle_window_s")


class Split:
    """Where a load phase's time goes: seconds by part (SPLIT_PARTS), from its start."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def part(self, key: str) -> Iterator[None]:
        since = time.monotonic()
        try:
            yield
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.monotonic() - since

    def timed(self, key: str, step: Callable[[], Any]) -> Any:
        with self.part(key):
            return step()

    def total(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def document(self) -> dict[str, Any]:
        """{part_s..., other_s, total_s, needed_s: the rounds and the idle window, ratio: total/needed}."""
        total = self.total()
        parts = {key: round(self.seconds[key], 3) for key in SPLIT_PARTS if key in self.seconds}
        needed = round(sum(parts.get(key, 0.0) for key in NEEDED), 3)
        return {
            **parts,
            "other_s": round(max(0.0, total - sum(parts.values())), 3),
            "total_s": total,
            "needed_s": needed,
            "ratio": round(total / needed, 2) if needed else None,
        }


@dataclass(frozen=True)
class Settings:
    seconds: float = 2.0  # per round
    rounds: int = 3  # measured rounds, then one traced round
    trace: bool = True
    every_path: bool = True  # every path a side offers (False: its first, the published port, only)


@dataclass
class Endpoint:
    """Where the load goes and who serves it on the host."""

    host: str
    port: int
    pids: Callable[[], dict[int, str]]  # host PID -> role: the workload's processes, shim, VMM, proxy...
    alive: Callable[[], None]  # raises if the workload has died (a side's poll)
    logs: Callable[[], str]
    prefix: list[str] = field(default_factory=list)  # how a client reaches it (ip netns exec NAME)
    rootfs: Path | None = None  # the workload's own root filesystem, for a client that comes from it
    kvm_roles: frozenset[str] = frozenset()  # roles that run a KVM guest: their VM exits are counted too
    kernel_roles: frozenset[str] = frozenset({"workload"})  # whose calls the host's kernel serves for the workload
    storage: dict[str, Any] | None = None  # where the workload's files live, recorded with its load (I/O)
    gone: Callable[[], str | None] = lambda: None  # why this path no longer reaches a live workload (None: it does)
    inside: bool = False  # the client runs inside the guest (through `prefix`): the guest's copy of its tool
