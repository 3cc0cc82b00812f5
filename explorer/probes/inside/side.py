"""The inside probe on one side, read: each run's document typed and classified, its facts beside
the host's own (the probe run natively as the host's root right after, so at the same moment),
the cross-check against the workload's seccomp filter as the host reads it, and the figures the
claim reads (explorer/claims/claims.yaml, `isolation`).

Which kernel answered is the side's word (the registry's `answers`): where it is not the host's
(gVisor's Sentry, a VM's guest kernel), the host's own answers are not the reference for calling
an ENOSYS "blocked", and nothing is cross-checked against a host filter (the workload's calls
never reach one).
"""

from __future__ import annotations

from explorer.model import InsideAs, InsideDelivery, InsideOutput, InsideProgram
from explorer.probes import seccomp as seccomp_probe
from explorer.probes.inside.run import TIMEOUT_S, Finished, finished, probe_argv
from explorer.probes.inside.view import view
from explorer.result.inside import (
    CrossCheck,
    FilterClass,
    InsideRun,
    InsideSide,
    InsideSummary,
    InsideView,
    Operation,
)

USER = "the workload's user"
ROOT = "root inside"
REACHED = ("reachable", "succeeded")


def program(
    binary: str, workload_pid_inside: int, name: str, timeout_s: int = TIMEOUT_S, extra: tuple[str, ...] = ()
) -> InsideProgram:
    """Two runs where the workload runs: as the workload's own user (the probe takes the uid and
    gid of the workload's process, as the guest numbers it), and as the side's root; `extra`
    arguments go to both (a test's --sleep-for-test)."""
    return InsideProgram(
        binary=binary,
        runs=(InsideAs(USER, ("--as-pid", str(workload_pid_inside), *extra)), InsideAs(ROOT, extra)),
        timeout_s=timeout_s,
        name=name,
    )


def not_measured(reason: str, answered_by: str) -> InsideSide:
    return InsideSide(available=False, reason=reason, answered_by=answered_by)


def record(
    delivery: InsideDelivery,
    host: Finished,
    answered_by: str,
    on_host_kernel: bool,
    workload_pid: int | None,
    wall_s: float,
) -> InsideSide:
    """The side's record from what its channel brought back and the host's reference run."""
    runs = [_run(output.label, _finished(output), host, answered_by, on_host_kernel) for output in delivery.outputs]
    by_label = {run.as_user: run.view for run in runs if run.view is not None}
    reason = None if delivery.removal_error is None else f"the probe could not be removed: {delivery.removal_error}"
    if not by_label:
        failures = "; ".join(f"{run.as_user}: {run.failure.error}" for run in runs if run.failure is not None)
        return InsideSide(
            available=False,
            reason=f"no run printed the probe's document ({failures or 'no run was made'})",
            delivery=delivery.how,
            answered_by=answered_by,
            runs=runs,
            wall_s=round(wall_s, 3),
        )
    root = by_label.get(ROOT)
    checks, method, why_not = _cross_checked(root, on_host_kernel, workload_pid)
    if why_not:
        reason = f"{reason}; {why_not}" if reason else why_not
    return InsideSide(
        available=True,
        reason=reason,
        delivery=delivery.how,
        answered_by=answered_by,
        runs=runs,
        cross_check=checks,
        cross_check_method=method,
        summary=summary(by_label.get(USER), root, answered_by, on_host_kernel, checks),
        wall_s=round(wall_s, 3),
    )


def _finished(output: InsideOutput) -> Finished:
    argv = ["explorer-inside", output.label]
    return finished(argv, output.returncode, output.stdout, output.stderr, output.wall_s)


def _run(label: str, done: Finished, host: Finished, answered_by: str, on_host_kernel: bool) -> InsideRun:
    if done.doc is None:
        return InsideRun(as_user=label, wall_s=round(done.wall_s, 3), view=None, failure=done.failure)
    gap_s = done.wall_s + host.wall_s  # the two readings were at most this far apart
    seen = view(done.doc, host.doc, answered_by, gap_s, operations_reference=on_host_kernel)
    return InsideRun(as_user=label, wall_s=round(done.wall_s, 3), view=seen, failure=None)


# ---- the cross-check against the workload's filter, read from the host ------------------------

CROSS_CHECK_METHOD = (
    "the workload process's seccomp filters read from the host with ptrace (PTRACE_SECCOMP_GET_FILTER) and "
    "evaluated for each operation's system call, arguments unknown (explorer/probes/seccomp.py); beside the "
    "probe's answer as root inside, which runs under the same filter (the engine gives it to every process "
    "of the container)"
)


def _cross_checked(
    root: InsideView | None, on_host_kernel: bool, workload_pid: int | None
) -> tuple[list[CrossCheck], str | None, str | None]:
    """(rows, method, why there are none) of the cross-check."""
    if not on_host_kernel:
        return [], None, None  # the workload's calls never reach a filter of the host's
    if root is None:
        return [], None, "no run as root inside to cross-check"
    if workload_pid is None:
        return [], None, "no workload process on the host to read a filter from"
    reading = seccomp_probe.read(workload_pid)
    calls = frozenset(call for op in root.operations for call in op.syscalls)
    classes = seccomp_probe.classes(reading, only=calls)  # the operations' calls only: 1/8 of the work
    if classes is None:
        return [], None, f"the workload's filter could not be read for the cross-check: {reading.reason}"
    return cross_check(root.operations, classes), CROSS_CHECK_METHOD, None


def cross_check(operations: list[Operation], classes: dict[str, str]) -> list[CrossCheck]:
    """Each operation's calls: what the filter says of it, what the kernel answered inside."""
    rows = []
    for op in operations:
        for syscall in op.syscalls:
            cls = _filter_class(classes.get(syscall, "unknown"))
            agrees, said = _judged(cls, op)
            rows.append(
                CrossCheck(
                    operation=op.id,
                    syscall=syscall,
                    filter=cls,
                    inside=op.outcome,
                    agrees=agrees,
                    said=said,
                )
            )
    return rows


def _filter_class(cls: str) -> FilterClass:
    for known in ("allowed", "conditional", "denied"):
        if cls == known:
            return known
    return "unknown"


def _judged(cls: str, op: Operation) -> tuple[bool | None, str]:
    answer = op.errno_name or ("worked" if op.outcome == "succeeded" else op.outcome)
    if cls == "unknown":
        return None, "libseccomp names no such call for this architecture: not evaluated"
    if cls == "conditional":
        return None, f"the filter allows it for some arguments only; inside it was {op.outcome} ({answer})"
    if op.outcome not in (*REACHED, "blocked"):
        return None, f"inside it was {op.outcome} ({op.reason}): nothing to compare"
    if cls == "denied":
        if op.outcome in REACHED:
            return False, f"DISAGREEMENT: the filter denies it, yet the kernel answered inside ({answer})"
        return True, f"the filter denies it; refused inside ({answer})"
    if op.outcome == "blocked":
        return True, f"the filter allows it; the kernel refused it inside ({answer}): a missing capability or an LSM"
    return True, f"the filter allows it; the kernel answered inside ({answer})"


# ---- the claim's figures ----------------------------------------------------------------------


def summary(
    user: InsideView | None, root: InsideView | None, answered_by: str, on_host_kernel: bool, checks: list[CrossCheck]
) -> InsideSummary:
    facts_view = user if user is not None and user.facts is not None else root
    facts = facts_view.facts if facts_view is not None else None
    compared = {name: getattr(facts, name) for name in type(facts).model_fields} if facts is not None else {}
    seen = [name for name, fact in compared.items() if fact.same_as_host is True]
    either = root if root is not None else user
    ops = either.operations if either is not None else []
    reached_user = _count(user, REACHED)
    reached_root = _count(root, REACHED)
    return InsideSummary(
        answered_by=answered_by,
        host_kernel=on_host_kernel,
        facts_compared=sum(fact.same_as_host is not None for fact in compared.values()),
        facts_as_host=len(seen),
        facts_seen=seen,
        same_boot_id=compared["boot_id"].same_as_host if "boot_id" in compared else None,
        operations=len(ops),
        reached_as_user=reached_user,
        blocked_as_user=_count(user, ("blocked",)),
        reached_as_root=reached_root,
        blocked_as_root=_count(root, ("blocked",)),
        host_kernel_reached_as_user=reached_user if on_host_kernel else 0,
        host_kernel_reached_as_root=reached_root if on_host_kernel else 0,
        reached_names_as_root=[op.id for op in (root.operations if root else []) if op.outcome in REACHED],
        disagreements=sum(check.agrees is False for check in checks),
    )


def _count(run: InsideView | None, outcomes: tuple[str, ...]) -> int:
    return sum(op.outcome in outcomes for op in run.operations) if run is not None else 0


__all__ = ["ROOT", "USER", "cross_check", "not_measured", "probe_argv", "program", "record", "summary"]
