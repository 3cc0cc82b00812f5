"""A side's inside record (explorer/probes/inside/side.py) made from real runs of the probe on this
host, handed over as a channel hands them back: the summary the claim reads, the cross-check
against a workload's seccomp filter read from the host (a real libseccomp filter on a real
process: agreement where the probe ran under it, a DISAGREEMENT said where it did not), another
kernel's answers never counted as the host's, and the failures a side can bring back."""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorer.model import InsideDelivery, InsideOutput
from explorer.output import inside_chart, inside_table
from explorer.probes.inside import side
from explorer.probes.inside.run import TIMED_OUT, host_reference
from explorer.result import Result
from explorer.result.inside import InsideSide
from tests.unit.documents import partial
from tests.unit.inside_helpers import NOBODY, needs_root, probe_binary

SYSTEM_PYTHON = "/usr/bin/python3"
# Loads a libseccomp filter (mount and keyctl: EPERM), then execs the rest of its argv under it.
UNDER_FILTER = textwrap.dedent(
    """
    import errno, os, sys, seccomp
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in ("mount", "keyctl"):
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    f.load()
    os.execv(sys.argv[1], sys.argv[1:])
    """
)
HOST = "the host's kernel"


def _no_binding() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True, check=False)
    return "python3-seccomp is not installed (scripts/setup-host installs it)" if done.returncode else None


def _output(label: str, argv: list[str]) -> InsideOutput:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return InsideOutput(label, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def _runs(*prefix: str) -> list[InsideOutput]:
    """The two runs as a channel makes them: as nobody (the probe's own drop), and as root."""
    binary = str(probe_binary())
    user = [*prefix, binary, "--timeout", "20", "--uid", str(NOBODY[0]), "--gid", str(NOBODY[1])]
    return [_output(side.USER, user), _output(side.ROOT, [*prefix, binary, "--timeout", "20"])]


@pytest.fixture(scope="module")
def workload() -> Iterator[int]:
    """A host process under the filter, standing for a container's workload (its host PID)."""
    needs_root()
    if reason := _no_binding():
        pytest.skip(reason)
    proc = subprocess.Popen([SYSTEM_PYTHON, "-c", UNDER_FILTER, "/bin/sleep", "120"])
    try:
        deadline = time.monotonic() + 10
        while "Seccomp:\t2" not in Path(f"/proc/{proc.pid}/status").read_text():
            assert time.monotonic() < deadline, "the filter was never loaded"
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def host():
    needs_root()
    return host_reference(probe_binary())


def test_a_native_record_sums_what_its_runs_saw(host):
    record = side.record(InsideDelivery("natively", _runs()), host, HOST, True, None, 0.5)
    assert record.available and record.summary is not None
    summary = record.summary
    user, root = (run.view for run in record.runs)
    assert user is not None and root is not None and user.user.uid == NOBODY[0] and root.user.uid == 0
    assert summary.same_boot_id is True and {"kernel_release", "boot_id", "hostname"} <= set(summary.facts_seen)
    assert summary.operations == len(root.operations) >= 25
    reached = [op.id for op in root.operations if op.outcome in ("reachable", "succeeded")]
    assert summary.reached_names_as_root == reached and summary.reached_as_root == len(reached)
    assert summary.host_kernel_reached_as_root == summary.reached_as_root
    assert summary.reached_as_user < summary.reached_as_root  # nobody lacks the capabilities root holds
    assert record.cross_check == [] and record.reason == "no workload process on the host to read a filter from"


def test_the_cross_check_agrees_where_the_probe_ran_under_the_workload_s_filter(host, workload):
    delivery = InsideDelivery("under the filter", _runs(SYSTEM_PYTHON, "-c", UNDER_FILTER))
    record = side.record(delivery, host, HOST, True, workload, 0.5)
    assert record.cross_check_method and record.reason is None
    rows = {row.syscall: row for row in record.cross_check}
    assert (rows["mount"].filter, rows["mount"].inside, rows["mount"].agrees) == ("denied", "blocked", True)
    assert rows["keyctl"].filter == "denied" and rows["keyctl"].agrees is True
    assert all(row.agrees is not False for row in record.cross_check)
    assert record.summary is not None and record.summary.disagreements == 0


def test_a_call_the_filter_denies_yet_answered_inside_is_a_disagreement_said_aloud(host, workload):
    """The probe not under the filter it is checked against: the kernel answers mount, which the
    filter denies; the record and the report's notes say so, never hide it."""
    record = side.record(InsideDelivery("not under it", _runs()), host, HOST, True, workload, 0.5)
    wrong = [row for row in record.cross_check if row.agrees is False]
    assert "mount" in {row.syscall for row in wrong}
    assert all(row.said.startswith("DISAGREEMENT") for row in wrong)
    assert record.summary is not None and record.summary.disagreements == len(wrong)
    result = _document_with({"runc": record})
    notes = inside_table.inside_notes(result)
    assert any(f"{len(wrong)} DISAGREEMENT(S)" in note and "mount" in note for note in notes), notes
    _, rows = inside_table.cross_check_table(result)
    assert ["runc container", "mount", "mount", "denied", "reachable", "NO"] in rows


def test_another_kernel_s_answers_are_never_the_host_s_and_nothing_is_cross_checked(host, workload):
    record = side.record(InsideDelivery("natively", _runs()), host, "gVisor's Sentry", False, workload, 0.5)
    assert record.summary is not None and record.summary.reached_as_root > 0
    assert record.summary.host_kernel_reached_as_root == record.summary.host_kernel_reached_as_user == 0
    assert record.cross_check == [] and record.cross_check_method is None
    result = _document_with({"gvisor": record})
    counts = dict(inside_chart.isolation_rows(result))
    assert all(c[0] == 0 and c[1] > 0 for c in counts.values()), counts


def test_runs_that_printed_nothing_make_a_side_not_measured_with_each_reason(host):
    outputs = [
        InsideOutput(side.USER, TIMED_OUT, "", "explorer-inside: --timeout reached while sleeping", 2.0),
        InsideOutput(side.ROOT, 1, "not json", "", 0.1),
    ]
    record = side.record(InsideDelivery("somehow", outputs, "rm -f exited 1"), host, HOST, True, None, 2.1)
    assert not record.available and record.summary is None
    assert record.reason and "own --timeout" in record.reason and "root inside" in record.reason
    assert [run.failure.timed_out for run in record.runs if run.failure] == [True, False]


def test_a_removal_that_failed_is_said(host):
    record = side.record(InsideDelivery("natively", _runs(), "rm -f exited 1: busy"), host, HOST, True, None, 0.5)
    assert record.available and record.reason and "could not be removed: rm -f exited 1" in record.reason


def _document_with(insides: dict[str, InsideSide]) -> Result:
    """A result whose sides hold only their inside records (a reader's test)."""
    titles = {"runc": "runc container", "gvisor": "gVisor container"}
    return partial(
        {"sides": {n: {"title": titles[n], "inside": r.model_dump(mode="json")} for n, r in insides.items()}}
    )
