"""What the inside probe's document means: each operation classified from the kernel's raw answer
(the C program reports errno only; the classification lives here), and each fact set beside the
host's own value read at the same moment (by the same probe, run natively as the host's root).

The classification, from the errno of a call made with harmless arguments:
  blocked    EPERM or EACCES: a missing capability, an LSM or a seccomp filter refused it; a child
             killed by SIGSYS (a filter's KILL or TRAP action); ENOSYS where the host's own kernel
             has the call (a filter's ENOSYS, or the answering kernel lacks it); an op's own
             refusals (unshare(CLONE_NEWUSER)'s ENOSPC when user namespaces are switched off)
  absent     ENOSYS where the host has no such call either (or nothing is known of the host): the
             kernel that answered has none, so there is nothing to block
  reachable  any other error: the kernel checked the arguments. What that proves depends on the
             op's `tells` (operations.yaml): with "permission" the capability was checked first, so
             the caller holds it; with "filter" only that no filter stopped the call
  succeeded  the call worked, in a child that exited at once (unshare, setns, chroot)
  skipped    the probe did not make it (it says why); unclear: a signal other than SIGSYS
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from explorer.result.inside import (
    INSIDE_FORMAT,
    OUTCOMES,
    Compared,
    ComparedFacts,
    Facts,
    InsideView,
    Operation,
    Outcome,
    ProbeDocument,
    RawOperation,
    Tells,
)

REFUSED = ("EPERM", "EACCES")
UPTIME_SLACK_S = 3.0  # beyond the time between the two readings
MEM_TOTAL_SLACK = 0.01
UNLIMITED_BYTES = 1 << 62  # cgroup v1 says "no limit" with PAGE_COUNTER_MAX pages, ~2^63


class OperationMeta(BaseModel):
    """One entry of operations.yaml."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    why: str
    tells: Tells
    checks: str
    config: str | None
    removed: bool = False
    may_succeed: bool = False
    blocked_errnos: list[str] = []
    absent_errnos: list[str] = []
    note: str | None = None
    engine_versions: str | None = None  # where the answer depends on the engine's version: which answers what
    references: list[str]


@functools.cache
def operations() -> dict[str, OperationMeta]:
    """operations.yaml, validated: op id -> its metadata, in the file's order."""
    text = resources.files("explorer.probes.inside").joinpath("operations.yaml").read_text()
    loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["operations"]
    return {op_id: OperationMeta.model_validate(entry) for op_id, entry in loaded.items()}


def classify(op: RawOperation, host: RawOperation | None = None) -> tuple[Outcome, str]:
    """The outcome of one call and why, from its raw answer (and the host's own, where known)."""
    meta = operations()[op.id]
    if op.skipped is not None:
        return "skipped", f"not made: {op.skipped}"
    if op.signal is not None:
        name = _signal_name(op.signal)
        if op.signal == signal.SIGSYS:
            return "blocked", f"the child making the call was killed by {name}: a seccomp filter's KILL or TRAP action"
        return "unclear", f"the child making the call was killed by {name}"
    if op.ret is not None and op.ret >= 0:
        if meta.may_succeed:
            return "succeeded", "it worked, in a child that exited at once"
        return "succeeded", "UNEXPECTED: it worked although it was made with invalid arguments"
    name = op.errno_name or ""
    if name in REFUSED or name in meta.blocked_errnos:
        return "blocked", f"{name}: refused ({_refused_by(meta)})"
    if name == "ENOSYS" or name in meta.absent_errnos:
        if host is not None and host.errno_name is not None and host.errno_name not in ("ENOSYS", *meta.absent_errnos):
            return "blocked", (
                f"{name} here, but the host's kernel has the call ({host.errno_name} there): a filter answering "
                f"{name}, or the kernel that answered was built without it"
            )
        return "absent", f"{name}: no such call in the kernel that answered (a filter answering {name} looks the same)"
    if meta.tells == "permission":
        return (
            "reachable",
            f"{name}: the kernel checked the arguments after its permission check: the caller may do this",
        )
    return (
        "reachable",
        f"{name}: the kernel checked the arguments; no filter stopped the call (this says nothing of a capability)",
    )


def _refused_by(meta: OperationMeta) -> str:
    if meta.tells == "permission":
        return "a missing capability, an LSM or a seccomp filter"
    return "before any argument was checked: a seccomp filter or an LSM"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classified(op: RawOperation, host: RawOperation | None, answered_by: str | None) -> Operation:
    meta = operations()[op.id]
    outcome, reason = classify(op, host)
    return Operation(
        id=op.id,
        syscalls=op.syscalls,
        call=op.call,
        harmless=op.harmless,
        ret=op.ret,
        errno=op.errno,
        errno_name=op.errno_name,
        signal=op.signal,
        outcome=outcome,
        reason=reason,
        tells=meta.tells,
        answered_by=answered_by,
        host_errno_name=host.errno_name if host is not None else None,
        why=meta.why,
        references=meta.references,
        note=meta.note,
        engine_versions=meta.engine_versions,
    )


# ---------------------------------------------------------------- facts beside the host's


def limit_of(raw: str) -> float | None:
    """A cgroup limit as the probe read it: bytes for memory, a CPU fraction for "QUOTA PERIOD";
    None when unlimited ("max", "-1", or cgroup v1's huge page-rounded number)."""
    parts = raw.split()
    if not parts or parts[0] in ("max", "-1"):
        return None
    value = float(parts[0])
    if len(parts) == 2:
        return value / float(parts[1])
    return None if value >= UNLIMITED_BYTES else value


def _equal(a: Any, b: Any, gap_s: float) -> bool:
    return bool(a == b)


def _names(a: Any, b: Any, gap_s: float) -> bool:
    return {item.name for item in a} == {item.name for item in b}


RULES: dict[str, tuple[str, Callable[[Any, Any, float], bool]]] = {
    "mem_total_bytes": ("within 1%", lambda a, b, gap: abs(a - b) <= MEM_TOTAL_SLACK * max(b, 1)),
    "uptime_s": (
        f"within {UPTIME_SLACK_S:.0f} s plus the time between the two readings",
        lambda a, b, gap: abs(a - b) <= UPTIME_SLACK_S + gap,
    ),
    "memory_limit": (
        "the same limit (unlimited when max, -1 or 2^62 and up)",
        lambda a, b, g: limit_of(a) == limit_of(b),
    ),
    "cpu_limit": ("the same quota/period (unlimited when max or -1)", lambda a, b, g: limit_of(a) == limit_of(b)),
    "net_interfaces": ("the same interface names", _names),
    "block_devices": ("the same device names", _names),
    "processes_visible": ("within 5 or 10% of the host's count", lambda a, b, g: abs(a - b) <= max(5, 0.1 * b)),
    "mounts": ("the same number of mounts", lambda a, b, g: a.count == b.count),
    "proc_sys_writable": ("writable alike", lambda a, b, g: a.writable == b.writable),
    "sys_writable": ("writable alike", lambda a, b, g: a.writable == b.writable),
    "kernel_log": (
        "the log's size and /dev/kmsg readable alike",
        lambda a, b, g: (
            (a.syslog_size_bytes is None, a.kmsg_readable) == (b.syslog_size_bytes is None, b.kmsg_readable)
        ),
    ),
    "kallsyms": ("kernel addresses shown alike", lambda a, b, g: a.nonzero_addresses == b.nonzero_addresses),
    "capabilities": ("the same effective capabilities", lambda a, b, g: a.effective == b.effective),
    "seccomp": ("the same seccomp mode", lambda a, b, g: a.mode == b.mode),
    "namespaces": ("every namespace the same (on the same kernel only)", _equal),
}
ABSENCE_IS_A_VALUE = ("boot_id",)  # an absent boot_id (gVisor) is not the host's


def compare(facts: Facts, host: Facts, gap_s: float = 0.0) -> ComparedFacts:
    """Each fact beside the host's; `gap_s` is the time between the two readings."""
    same_kernel = facts.boot_id.value is not None and facts.boot_id.value == host.boot_id.value
    compared: dict[str, Any] = {}
    for name in Facts.model_fields:
        mine, theirs = getattr(facts, name), getattr(host, name)
        rule, same = RULES.get(name, ("equal", _equal))
        verdict: bool | None
        why = None
        if name in ABSENCE_IS_A_VALUE and (mine.value is None or theirs.value is None):
            verdict = mine.value == theirs.value
        elif mine.value is None or theirs.value is None:
            verdict, why = None, "not read here" if mine.value is None else "not read on the host"
        elif name == "namespaces" and not same_kernel:
            verdict, why = (
                None,
                "another kernel: namespace numbers are per kernel (the initial ones are the same in all)",
            )
        else:
            verdict = same(mine.value, theirs.value, gap_s)
        kind = ComparedFacts.model_fields[name].annotation
        assert isinstance(kind, type) and issubclass(kind, Compared)
        compared[name] = kind(
            value=mine.value,
            host_value=theirs.value,
            method=mine.method,
            source=mine.source,
            error=mine.error,
            rule=rule,
            same_as_host=verdict,
            why=why,
        )
    return ComparedFacts(**compared)


def view(
    doc: ProbeDocument,
    host: ProbeDocument | None = None,
    answered_by: str | None = None,
    gap_s: float = 0.0,
    operations_reference: bool = True,
) -> InsideView:
    """The probe's document classified, and compared with the host's (a native run as root).
    Where another kernel than the host's answered (`operations_reference` False), the host's own
    answers are no reference for the operations: only the facts are compared with it."""
    host_ops = {op.id: op for op in (host.operations or [])} if host and operations_reference else {}
    ops = [classified(op, host_ops.get(op.id), answered_by) for op in doc.operations or []]
    facts = compare(doc.facts, host.facts, gap_s) if doc.facts and host and host.facts else None
    return InsideView(
        format=INSIDE_FORMAT,
        user=doc.user,
        answered_by=answered_by,
        facts=facts,
        operations=ops,
        outcomes={outcome: sum(op.outcome == outcome for op in ops) for outcome in OUTCOMES},
        host_reference=_reference(host),
        elapsed_ms=doc.elapsed_ms,
    )


def _reference(host: ProbeDocument | None) -> str | None:
    if host is None:
        return None
    return f"explorer-inside run natively on the host as uid {host.user.euid} (PID {host.pid}) at the same moment"
