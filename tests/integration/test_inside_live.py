"""The inside probe live (issue 31): the run the issue checks with, read against what the host
says at the same time (/proc/meminfo, the configured memory, the seccomp evaluation); the probe
in a read-only container (it goes to /dev), a hung probe ended at its own timeout and reported,
and Ctrl-C while a probe runs (exit 130, nothing left: the module's guard checks the host)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from explorer.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from explorer.dockerd import docker_client
from explorer.guest.exec import DockerExec
from explorer.guest.handles import RunningContainer
from explorer.inside_run import SLEEP_FOR_TEST
from explorer.model import LABEL_MANAGED, LABEL_OWNER, LABEL_RUN, Target
from explorer.probes.inside import build, side
from explorer.probes.inside.run import TIMED_OUT, host_reference
from tests.conftest import ROOT, ctrl_c_when, explorer_argv, explorer_containers, run_explorer

pytestmark = [pytest.mark.docker, pytest.mark.libvirt]

SIDES = ("runc", "userns", "gvisor", "nspawn", "microvm")
ON_HOST_KERNEL = ("runc", "userns", "nspawn")
MIN_OPERATIONS = 25


@pytest.fixture(scope="module")
def checked(redis_artifact) -> dict:
    """The issue's own check: `explorer run redis --sides runc,userns,gvisor,nspawn,microvm
    --no-load --repeat 1 --format json`."""
    result = run_explorer(
        "run", "redis", "--sides", ",".join(SIDES), "--no-load", "--repeat", "1", "--format", "json", timeout=1500
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def host_mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_every_side_classifies_at_least_25_operations_per_user_with_errno_and_kernel(checked):
    for name in SIDES:
        inside = checked["sides"][name]["inside"]
        assert inside["available"], f"{name}: {inside['reason']}"
        assert [run["as_user"].split(" (")[0] for run in inside["runs"]] == [side.USER, side.ROOT]
        for run in inside["runs"]:
            assert run["failure"] is None, f"{name} {run['as_user']}: {run['failure']}"
            operations = run["view"]["operations"]
            assert len(operations) >= MIN_OPERATIONS, (name, run["as_user"], len(operations))
            for op in operations:
                assert op["outcome"] in ("blocked", "reachable", "succeeded", "absent", "skipped", "unclear"), op
                if op["outcome"] in ("blocked", "reachable", "absent"):
                    assert op["errno_name"], f"{name}: {op['id']} {op['outcome']} without an errno"
                if op["outcome"] != "skipped":
                    assert op["answered_by"] == inside["answered_by"], (name, op["id"], op["answered_by"])


def test_the_kernel_that_answered_is_the_sides_own_word(checked):
    answered = {name: checked["sides"][name]["inside"]["summary"]["answered_by"] for name in SIDES}
    host = {name: checked["sides"][name]["inside"]["summary"]["host_kernel"] for name in SIDES}
    assert {answered[n] for n in ON_HOST_KERNEL} == {"the host's kernel"} and all(host[n] for n in ON_HOST_KERNEL)
    assert answered["gvisor"] == "gVisor's Sentry" and not host["gvisor"]
    assert answered["microvm"] == "the guest's own kernel" and not host["microvm"]
    release = subprocess.run(["uname", "-r"], capture_output=True, text=True, check=True).stdout.strip()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    for name in SIDES:
        facts = checked["sides"][name]["inside"]["runs"][1]["view"]["facts"]
        as_host = facts["kernel_release"]["value"] == release
        assert as_host == (name in ON_HOST_KERNEL), (name, facts["kernel_release"]["value"], release)
        if name in ("runc", "userns"):
            assert facts["boot_id"]["value"] == boot_id
        if name in ("gvisor", "microvm"):
            assert facts["boot_id"]["value"] != boot_id


def test_runc_sees_the_hosts_memtotal_and_the_microvm_at_most_its_configured_memory(checked):
    host = host_mem_total_bytes()  # read by the test, after the run: MemTotal does not move
    for run in checked["sides"]["runc"]["inside"]["runs"]:
        seen = run["view"]["facts"]["mem_total_bytes"]["value"]
        assert abs(seen - host) <= host * 0.01, (run["as_user"], seen, host)
    configured = checked["sides"]["microvm"]["memory"]["configured_bytes"]
    assert configured, "the microVM's configured memory is not in the document"
    for run in checked["sides"]["microvm"]["inside"]["runs"]:
        seen = run["view"]["facts"]["mem_total_bytes"]["value"]
        assert 0 < seen <= configured, (run["as_user"], seen, configured)
        assert seen < host


def test_no_operation_is_reachable_where_the_host_side_filter_denies_it(checked):
    for name in ON_HOST_KERNEL:
        inside = checked["sides"][name]["inside"]
        assert inside["cross_check_method"], f"{name}: no cross-check ({inside['reason']})"
        assert inside["cross_check"], f"{name}: the cross-check compared nothing"
        denied = {row["operation"] for row in inside["cross_check"] if row["filter"] == "denied"}
        for run in inside["runs"]:
            for op in run["view"]["operations"]:
                if op["id"] in denied:
                    assert op["outcome"] == "blocked", (name, run["as_user"], op["id"], op["errno_name"])
        for row in inside["cross_check"]:
            assert row["agrees"] is not False, (name, row)
        assert inside["summary"]["disagreements"] == 0


def test_the_isolation_claim_is_judged_on_every_side_with_its_evidence(checked):
    claim = next(c for c in checked["claims"] if c["id"] == "isolation")
    assert set(claim["sides"]) == set(SIDES)
    for name, judged in claim["sides"].items():
        assert judged["verdict"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE), (name, judged["verdict"])
        summary = checked["sides"][name]["inside"]["summary"]
        assert f"of {summary['operations']} " in judged["evidence"], (name, judged["evidence"])
        assert f"of {summary['facts_compared']} of the host's own facts" in judged["evidence"]
        if name in ON_HOST_KERNEL:
            assert all(op in judged["evidence"] for op in summary["reached_names_as_root"]), (name, judged["evidence"])
    assert claim["sides"]["runc"]["verdict"] == "reproduced"
    assert claim["sides"]["microvm"]["verdict"] == "reproduced"


def test_the_probe_left_nothing_in_the_run(checked):
    assert explorer_containers(docker_client(), f"{LABEL_RUN}={checked['run_id']}") == []
    assert not [p for p in psutil.process_iter(["cmdline"]) if ".explorer-inside-" in " ".join(p.info["cmdline"] or ())]


@pytest.fixture(scope="module")
def read_only(redis_artifact) -> Iterator[Target[RunningContainer]]:
    """A container whose root is read-only, its workload a plain user's (nobody): not one of
    explorer's sides, made here with the SDK, labelled as a run's so `explorer clean` finds it."""
    client = docker_client()
    container = client.containers.run(
        redis_artifact.ref,
        entrypoint=["/bin/sleep"],
        command=["600"],
        user="65534:65534",
        read_only=True,
        network_mode="none",
        detach=True,
        labels={LABEL_MANAGED: "true", LABEL_RUN: "inside-ro", LABEL_OWNER: str(os.getpid())},
    )
    try:
        handle = RunningContainer(container=container, workload_port=0, process_names=("sleep",))
        yield Target(side="runc", name=container.name, run_id="inside-ro", host_port=0, handle=handle)
    finally:
        container.remove(force=True)


def test_a_read_only_root_gets_the_probe_in_dev_and_it_is_removed(read_only):
    program = side.program(str(build.build()), 1, ".explorer-inside-ro")
    delivery = DockerExec().inside(read_only, program)
    assert "/dev/.explorer-inside-ro" in delivery.how and "tmpfs /dev" in delivery.how
    assert delivery.removal_error is None
    record = side.record(delivery, host_reference(), "the host's kernel", True, None, 0.0)
    assert record.available, record.reason
    user = record.runs[0]
    assert user.view is not None and (user.view.user.uid, user.view.user.gid) == (65534, 65534)
    listed = read_only.held.container.exec_run(["/bin/ls", "-a", "/dev", "/tmp"]).output.decode()
    assert ".explorer-inside" not in listed


def test_a_hung_probe_is_ended_at_its_own_timeout_and_reported(read_only):
    program = side.program(
        str(build.build()), 1, ".explorer-inside-hung", timeout_s=2, extra=("--sleep-for-test", "60")
    )
    delivery = DockerExec().inside(read_only, program)
    assert [out.returncode for out in delivery.outputs] == [TIMED_OUT, TIMED_OUT]
    assert all("--timeout reached while sleeping" in out.stderr for out in delivery.outputs)
    record = side.record(delivery, host_reference(), "the host's kernel", True, None, 0.0)
    assert not record.available and record.reason and "own --timeout" in record.reason
    assert all(run.failure is not None and run.failure.timed_out for run in record.runs)
    assert delivery.removal_error is None


def _probe_running() -> bool:
    return any(
        "--sleep-for-test" in (p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
    )


def test_ctrl_c_while_the_probe_runs_exits_130_and_leaves_nothing(redis_artifact):
    proc = subprocess.Popen(
        explorer_argv("run", "redis", "--sides", "runc", "--no-load", "--repeat", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, SLEEP_FOR_TEST: "15"},
    )
    ctrl_c_when(proc, _probe_running, "the inside probe running in the runc container", timeout=300, every=0.1)
    assert explorer_containers(docker_client(), f"{LABEL_OWNER}={proc.pid}") == []
    assert not _probe_running()
