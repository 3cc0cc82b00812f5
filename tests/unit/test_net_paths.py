"""The load paths' pure logic: which paths each engine offers and that every one stays on
127.0.0.1; why a path is not measured (nsenter missing, the network namespace gone, gVisor's
own network stack); the document the load phase writes for several paths (every round's argv,
the first path mirrored where older readers look, a path gone under the load not measured);
the split of the phase's time; the cost rows per path and the breakdown in words."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from explorer.contracts import EngineDefaults
from explorer.engines import docker, runsc
from explorer.errors import ExplorerError
from explorer.guest.handles import RunningContainer
from explorer.load import clients, native, rounds, trace, traced
from explorer.model import LOOPBACK, NetPath, Side, Target
from explorer.output import compare, costs, figures, report
from explorer.result import PathLoad, Result
from explorer.scenario import from_dict
from tests.unit.documents import partial

SIDE = Side("runc", "container", "runc container", "x:y", roles=("shim",), about="a test side")


def _target(pid: int) -> Target[RunningContainer]:
    """A made target's handle, with no container behind it (load_paths reads only the port and PID)."""
    handle = RunningContainer(container=None, workload_port=6379, process_names=("redis-server",), init_pid=pid)  # type: ignore[arg-type]
    return Target(side="runc", name="t", run_id="r", host_port=32768, handle=handle)


class FakeDocker:
    """What Runsc asks of the Docker engine: its facts (runsc's runtime arguments)."""

    def __init__(self, *args: str) -> None:
        self.args = list(args)

    def check(self) -> dict[str, Any]:
        return {"runsc_args": self.args}


@pytest.fixture
def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def every_offered_path(monkeypatch, exited_pid: int) -> list[NetPath]:
    """Each engine's paths, in every case it can be in: alive, gone, gVisor on host or netstack."""
    paths = docker.DockerEngine(SIDE, docker.Runc()).load_paths(_target(os.getpid()))
    paths += docker.DockerEngine(SIDE, docker.Runc()).load_paths(_target(exited_pid))
    gvisor = runsc.Runsc()
    monkeypatch.setattr(gvisor, "runtime_pids", lambda target: {1: "sandbox", 2: "gofer"})
    paths.append(gvisor.netns_path(_target(5), 6379, FakeDocker("--platform=ptrace", "--network=host")))
    paths.append(gvisor.netns_path(_target(5), 6379, FakeDocker("--platform=ptrace")))
    paths += EngineDefaults().load_paths(_target(1))
    pytest.importorskip("libvirt")  # the VM engines import libvirt-python
    from explorer.backends.fullvm import FULL_OS  # after the skip: libvirt-python may be missing
    from explorer.backends.microvm import MICROVM
    from explorer.engines import libvirt, snapshot, vagrant

    for machine in (MICROVM, FULL_OS):  # the full-OS VM's guest agent runs a client inside it too
        paths += libvirt.LibvirtEngine(SIDE, machine).load_paths(_target(1))
    for engine in (snapshot.SnapshotEngine, vagrant.VagrantEngine):
        paths += engine.load_paths(object.__new__(engine), _target(1))  # only the target's port is read
    scenario = from_dict(
        {"name": "s", "workload": {"image": "x:1", "port": 6379, "processes": ["x"], "ready": "redis"}}
    )
    paths.append(native.NativeReference(scenario, None, Path("/nonexistent")).net_path)  # type: ignore[arg-type]
    return paths


def test_every_path_of_every_engine_is_on_127_0_0_1(monkeypatch, exited_pid):
    paths = every_offered_path(monkeypatch, exited_pid)
    assert len(paths) == 13
    hostfwd = [p for p in paths if p.name == "QEMU user-mode networking (hostfwd)"]
    assert len(hostfwd) == 4 and {p.relay for p in hostfwd} == {"QEMU's slirp, in the VMM,"}
    inside = [p for p in paths if p.inside]
    assert [p.name for p in inside] == ["inside the guest (guest agent)"] and inside[0].port == 6379
    assert "explorer.guest.agent_run" in inside[0].prefix and "vCPU" in inside[0].description
    assert {path.host for path in paths} == {"127.0.0.1"}
    assert all(path.endpoint.startswith("127.0.0.1:") for path in paths)
    # a client joins a namespace only through nsenter or ip netns exec; nothing names another address
    for path in paths:
        assert not [arg for arg in path.prefix if "172." in arg or "192.168." in arg or "10." in arg]


@pytest.mark.parametrize("host", ["172.17.0.2", "192.168.122.10", "10.0.2.15", "0.0.0.0", "::"])
def test_a_path_off_loopback_cannot_be_made(host):
    with pytest.raises(ValueError, match="must stay on loopback"):
        NetPath("bridge", "a container's bridge address", 6379, host=host)
    assert NetPath("lo", "loopback", 1, host="127.0.0.2").host == "127.0.0.2"  # 127.0.0.0/8 is loopback


def test_docker_offers_the_published_port_first_then_the_containers_own_namespace():
    published, own = docker.DockerEngine(SIDE, docker.Runc()).load_paths(_target(os.getpid()))
    assert published.name == docker.PUBLISHED and published.port == 32768 and published.prefix == ()
    assert published.relay == "docker-proxy" and published.missing is None
    assert own.name == docker.OWN_NETNS and own.port == 6379 and own.relay is None
    assert own.prefix == ("nsenter", f"--net=/proc/{os.getpid()}/ns/net") and own.missing is None
    assert "net:[" in own.description  # which namespace, and whether it is the host's


def test_nsenter_missing_and_a_namespace_gone_are_reasons_not_guesses(monkeypatch, exited_pid):
    gone = docker.DockerEngine(SIDE, docker.Runc()).load_paths(_target(exited_pid))[1]
    assert gone.missing == f"the container's network namespace is gone: its process {exited_pid} has exited"
    monkeypatch.setattr(docker.shutil, "which", lambda name: None)
    missing = docker.DockerEngine(SIDE, docker.Runc()).load_paths(_target(os.getpid()))[1]
    assert missing.missing == "nsenter is not installed (apt-get install util-linux)"


def test_gvisor_offers_the_sandbox_namespace_only_with_host_networking(monkeypatch):
    gvisor = runsc.Runsc()
    sandbox = os.getpid()
    monkeypatch.setattr(gvisor, "runtime_pids", lambda target: {sandbox: "sandbox", 2: "gofer"})
    host = gvisor.netns_path(_target(5), 6379, FakeDocker("--platform=ptrace", "--network=host"))
    assert host.prefix == ("nsenter", f"--net=/proc/{sandbox}/ns/net") and host.missing is None
    assert f"runsc-sandbox's (PID {sandbox})" in host.description and "--network=host" in host.description
    netstack = gvisor.netns_path(_target(5), 6379, FakeDocker("--platform=ptrace"))
    assert netstack.missing.startswith("runsc runs with --network=sandbox (default): the workload's loopback is")


# ---- the document of several paths ------------------------------------------------------


class Echo(clients.Client):
    """A fake client: a Python one-liner printing the port it was given as its ops, so that
    each path's figures differ and can be told apart."""

    KIND = "fake"

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on

    def tool(self, rootfs: Path | None = None) -> list[str]:
        return [sys.executable, "-c"]

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        code = "raise SystemExit('nsenter: cannot open')" if port == self.fail_on else f"print({port})"
        return [*tool, code]

    def parse(self, out: str) -> dict[str, Any]:
        ops = int(out.split()[0])
        return {"ops": ops, "seconds": 1.0, "ops_s": float(ops), "p50_ms": None, "p99_ms": None, "detail": {}}

    def params(self) -> dict[str, Any]:
        return {}


def _endpoint(port: int, gone: str | None = None, prefix: tuple[str, ...] = ()) -> rounds.Endpoint:
    return rounds.Endpoint(LOOPBACK, port, dict, lambda: None, lambda: "its logs", list(prefix), gone=lambda: gone)


SETTINGS = rounds.Settings(seconds=0.1, rounds=3, trace=False)
PUBLISHED = NetPath("published port (docker-proxy)", "the published port", 1000, relay="docker-proxy")
OWN = NetPath("own netns (nsenter)", "its own namespace", 3000, ("env",))


def test_every_path_has_its_rounds_the_first_is_mirrored_at_the_top_and_every_argv_is_kept():
    got = rounds.measure_paths(
        Echo(), [(PUBLISHED, _endpoint(1000)), (OWN, _endpoint(3000, prefix=("env",)))], SETTINGS
    )
    assert got["path"] == PUBLISHED.name and list(got["paths"]) == [PUBLISHED.name, OWN.name]
    own = got["paths"][OWN.name]
    assert own["status"] == "ok" and own["summary"]["ops_s"]["median"] == 3000.0
    assert own["endpoint"] == "127.0.0.1:3000" and own["prefix"] == ["env"] and own["relay"] is None
    assert all(r["argv"][0] == "env" for r in own["rounds"]) and len(own["rounds"]) == 3
    # older readers (claims, the surface table, compare) find the first path where they looked
    assert got["status"] == "ok" and got["summary"]["ops_s"]["median"] == 1000.0 and got["rounds"]
    assert got["traced"] == {"available": False, "reason": "counting was not asked for"}
    split = got["phase_split"]
    assert split["total_s"] == got["phase_s"] > 0
    assert split["needed_s"] == round(split["measured_rounds_s"], 3) and split["ratio"] == pytest.approx(
        split["total_s"] / split["needed_s"], abs=0.01
    )


def test_a_client_that_is_explorers_own_loop_is_not_measured_inside_a_guest():
    from explorer.load.clients import LineLoop

    inside = NetPath("inside the guest (guest agent)", "d", 6379, prefix=("relay", "--"), inside=True)
    endpoint = dataclasses.replace(_endpoint(6379), inside=True)
    got = rounds.measure_paths(LineLoop(), [(inside, endpoint)], rounds.Settings(seconds=0.1, trace=False))
    assert got["paths"][inside.name]["status"] == "not measured"
    assert "explorer's own loop" in got["paths"][inside.name]["reason"]


def test_a_path_that_cannot_be_measured_says_why_and_the_others_are_measured():
    gone = NetPath(OWN.name, OWN.description, 3000, OWN.prefix, missing="nsenter is not installed (util-linux)")
    got = rounds.measure_paths(Echo(), [(PUBLISHED, _endpoint(1000)), (gone, None)], SETTINGS)
    assert got["paths"][OWN.name] == {
        **gone.meta(),
        "status": "not measured",
        "reason": "nsenter is not installed (util-linux)",
    }
    assert got["paths"][PUBLISHED.name]["status"] == "ok"


def test_a_namespace_gone_under_the_load_is_not_measured_and_a_failing_client_is_a_failure():
    gone = "the container's network namespace is gone: its process 42 has exited"
    got = rounds.measure_paths(
        Echo(fail_on=3000), [(PUBLISHED, _endpoint(1000)), (OWN, _endpoint(3000, gone=gone))], SETTINGS
    )
    assert got["paths"][OWN.name]["status"] == "not measured" and got["paths"][OWN.name]["reason"] == gone
    assert got["paths"][PUBLISHED.name]["status"] == "ok" and len(got["paths"][PUBLISHED.name]["rounds"]) == 3
    failed = rounds.measure_paths(Echo(fail_on=3000), [(OWN, _endpoint(3000))], SETTINGS)
    assert failed["status"] == "failed" and "nsenter: cannot open" in failed["reason"]


def test_a_dead_workload_fails_every_path_with_its_death():
    def dead() -> None:
        raise ExplorerError("the container exited with code 137")

    endpoint = rounds.Endpoint(LOOPBACK, 3000, dict, dead, lambda: "")
    got = rounds.measure_paths(Echo(fail_on=3000), [(OWN, endpoint)], SETTINGS)
    assert got["status"] == "failed" and "died under the load" in got["reason"]


def test_the_split_adds_up_and_names_what_its_rounds_need():
    split = rounds.Split()
    split.seconds = {"measured_rounds_s": 6.0, "traced_rounds_s": 2.0, "idle_window_s": 2.0, "keeper_s": 1.0}
    split.started -= 13.0
    doc = split.document()
    assert doc["needed_s"] == 10.0 and doc["total_s"] == pytest.approx(13.0, abs=0.1)
    assert doc["other_s"] == pytest.approx(2.0, abs=0.1) and doc["ratio"] == pytest.approx(1.3, abs=0.02)
    assert list(doc)[:4] == ["measured_rounds_s", "idle_window_s", "traced_rounds_s", "keeper_s"]  # in phase order


# ---- the traced part's counting --------------------------------------------------------------


def test_narrowed_counting_names_a_few_calls_and_counts_every_other_one(monkeypatch):
    table = {0: "read", 1: "write", 15: "rt_sigreturn", 232: "epoll_wait"}
    monkeypatch.setattr(trace, "TRACEFS", Path("/nonexistent"))  # no tracepoint found: all by number
    events = trace.narrowed(["write", "read", "nosuchcall"], table)
    # the housekeeping calls are counted by name always (rt_sigreturn: Go's preemption)
    assert events.named == () and events.labels == ["read", "rt_sigreturn", "write", trace.OTHERS]
    assert events.argv()[-1] == "id != 0 && id != 15 && id != 1"
    text = (
        "100,,raw_syscalls:sys_enter,10,100.00,,\n"
        "60,,raw_syscalls:sys_enter,10,100.00,,\n"
        "0,,raw_syscalls:sys_enter,10,100.00,,\n"
        "38,,raw_syscalls:sys_enter,10,100.00,,\n"
        "2,,raw_syscalls:sys_enter,10,100.00,,\n"
    )
    got = trace.figures({"workload": text}, events.labels)
    assert got["calls"] == 100 and got["syscalls"] == {"read": 60, "write": 38} and got["unnamed_calls"] == 2
    assert got["by_role"]["workload"]["unnamed_calls"] == 2
    numbered = trace.by_number(table)
    assert numbered.labels == ["read", "write", "rt_sigreturn", "epoll_wait"]
    assert numbered.argv()[:6] == ["-e", trace.TOTAL_EVENT, "-e", trace.TOTAL_EVENT, "--filter", "id == 0"]
    with pytest.raises(OSError, match="more counts"):
        trace.figures({"workload": text}, ["read"])


def test_calls_counted_without_a_name_are_said_under_the_surface_table():
    raw = copy.deepcopy(RAW)
    load = raw["sides"]["runc"]["load"]
    traced_figures = {"available": True, "calls": 500000, "unnamed_calls": 39}
    load["paths"] = {**load["paths"], "published port (docker-proxy)": {**_path(20000.0), "traced": traced_figures}}
    (note,) = costs.unnamed_notes(partial(raw))
    assert "runc container, published port (docker-proxy): 39 of 500,000" in note
    assert costs.unnamed_notes(RESULT) == []


def test_a_paths_calls_per_op_take_out_the_idle_rate_of_its_own_roles_only():
    idle = {"window_s": 2.0, "by_role": {"workload": {"calls": 20}, "proxy": {"calls": 200}}}
    counted = {"calls": 2050, "window_s": 3.0, "by_role": {"workload": {"calls": 2050}}}
    got = traced.per_op(counted, idle, {"ops": 1000, "seconds": 2.0, "ops_s": 500.0})
    # 1 s of the window was idle: 10 idle calls of the workload out, none of the proxy's
    assert got["by_role"]["workload"]["per_op"] == 2.04 and got["per_op"] == 2.04
    assert got["idle_calls_s"] == 10.0


# ---- the cost table -----------------------------------------------------------------------


def _path(rate: float | None, relay: str | None = None, status: str = "ok", **extra: Any) -> dict[str, Any]:
    if rate is None:
        return {"status": status, "reason": "nsenter is not installed", "relay": relay, **extra}
    spread = {"median": rate, "min": rate, "max": rate, "n": 3}
    return {"status": "ok", "summary": {"ops_s": spread}, "relay": relay, "description": "d", **extra}


def _load(paths: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    first = next(iter(paths))
    return {**paths[first], "path": first, "paths": paths, **extra}


RAW = {
    "load": {
        "settings": {"seconds_per_round": 2, "rounds": 3, "traced_round": True},
        "client": "redis-benchmark",
        "native": _load({"loopback (ip netns exec)": _path(50000.0)}),
    },
    "sides": {
        "runc": {
            "kind": "container",
            "title": "runc container",
            "load": _load(
                {
                    "published port (docker-proxy)": _path(20000.0, "docker-proxy"),
                    "own netns (nsenter)": _path(47500.0),
                },
                phase_split={"total_s": 22.0, "needed_s": 18.0, "ratio": 1.22, "measured_rounds_s": 12.0},
            ),
        },
        "gvisor": {
            "kind": "container",
            "title": "gVisor container",
            "load": _load(
                {
                    "published port (docker-proxy)": _path(2500.0, "docker-proxy"),
                    "own netns (nsenter)": _path(None, status="not measured"),
                }
            ),
        },
        "microvm": {
            "kind": "vm",
            "title": "microVM",
            "load": _load({"QEMU user-mode networking (hostfwd)": _path(3000.0, "QEMU's slirp")}, note="under TCG"),
        },
    },
}
RESULT = partial(RAW)


def test_paths_of_gives_each_path_its_ratio_to_native():
    got = [(row.side, row.path, None if row.ratio is None else round(row.ratio, 2)) for row in costs.paths_of(RESULT)]
    assert got == [
        ("native", "loopback (ip netns exec)", 1.0),
        ("runc", "published port (docker-proxy)", 0.4),
        ("runc", "own netns (nsenter)", 0.95),
        ("gvisor", "published port (docker-proxy)", 0.05),
        ("gvisor", "own netns (nsenter)", None),
        ("microvm", "QEMU user-mode networking (hostfwd)", 0.06),
    ]


def test_the_cost_table_has_a_row_per_path_and_numbers_the_missing_one():
    headers, rows = costs.costs_table(RESULT)
    assert headers[:4] == ["side", "path", "ops/s\n(range)", "vs\nnative"]
    assert [row[:2] for row in rows] == [
        ["native process", "loopback (ip netns exec)"],
        ["runc container", "published port (docker-proxy)"],
        ["", "own netns (nsenter)"],  # the side named once, on its first row
        ["gVisor container", "published port (docker-proxy)"],
        ["", "own netns (nsenter)"],
        ["microVM (TCG)", "QEMU user-mode networking (hostfwd)"],
    ]
    assert [row[3] for row in rows] == ["1.00x", "0.40x", "0.95x", "0.05x", "-", "0.06x"]
    assert rows[4][2] == "not measured [1]"
    assert rows[3][4] == "0.12x"  # against the first container's same path
    notes = costs.cost_notes(RESULT)
    assert "[1] gVisor container, own netns (nsenter): not measured: nsenter is not installed" in notes


def test_the_breakdown_says_what_the_isolation_and_the_path_each_cost():
    notes = costs.breakdowns(RESULT)
    assert notes[0] == (
        "runc container: 0.95x native on own netns (nsenter), 0.40x on published port (docker-proxy): the isolation "
        "costs 0.05x; published port (docker-proxy) costs the rest, 0.55x (docker-proxy relays every byte)"
    )
    assert notes[1].startswith("gVisor container: 0.05x native, on published port (docker-proxy) only")
    assert notes[2].startswith("microVM (TCG): 0.06x native, on QEMU user-mode networking (hostfwd) only")
    faster = costs.breakdown(
        [
            costs.PathRow("runc", "own", 1.08, "runc", 54000.0, None, PathLoad(status="ok")),
            costs.PathRow("runc", "published", 0.4, "runc", 20000.0, "docker-proxy", PathLoad(status="ok")),
        ]
    )
    assert "the isolation shows no cost here (at or above native)" in faster


def test_the_client_inside_the_guest_is_said_apart_never_as_the_isolation_without_its_path():
    said = costs.breakdown(
        [
            costs.PathRow("fullvm", "hostfwd", 0.05, "full-OS VM", 6000.0, "QEMU's slirp", PathLoad(status="ok")),
            costs.PathRow(
                "fullvm", "inside the guest", 0.02, "full-OS VM", 2400.0, None, PathLoad(status="ok", inside=True)
            ),
        ]
    )
    assert said is not None and "the isolation costs" not in said
    assert said.startswith("full-OS VM: 0.05x native, on hostfwd only")
    assert "the client inside the guest reaches 0.02x native, sharing the guest's vCPU" in said


def test_the_report_prints_the_paths_the_breakdown_and_the_phase_split():
    text = " ".join(report.render(RESULT, detail=True).split())  # the notes are wrapped to the terminal
    assert "own netns (nsenter)" in text and "QEMU user-mode networking (hostfwd)" in text
    assert "the isolation costs 0.05x" in text
    assert "runc container: 22.0 s, 1.22x the 18.0 s its rounds and idle window need" in text


class SlowStart(clients.RedisBenchmark):
    """redis-benchmark's CSV from a fake tool: each test pays 50 ms of connection setup, then
    serves 100,000 requests a second, so that a small batch understates the rate."""

    def tool(self, rootfs: Path | None = None) -> list[str]:
        code = (
            "import sys; n = int(sys.argv[sys.argv.index('-n') + 1]); rps = n / (0.05 + n / 100000)\n"
            'print(\'"test","rps","p50_latency_ms","p99_latency_ms"\')\n'
            'for t in (\'SET\', \'GET\'): print(f\'"{t}","{rps:.2f}","0.1","0.2"\')'
        )
        return [sys.executable, "-c", code]


def test_a_calibration_batch_too_short_to_say_the_rate_is_followed_by_a_longer_one():
    record: dict[str, Any] = {}
    client = SlowStart()
    sized = rounds.calibrated(client, client.tool(), _endpoint(1), rounds.Settings(seconds=2.0), record)
    first, second = record["calibration"]
    assert first["argv"][first["argv"].index("-n") + 1] == "2000" and first["seconds"] < 0.5
    assert first["ops_s"] == pytest.approx(2000 / 0.07, rel=0.01)
    assert second["ops_s"] == pytest.approx(100000 * 7142 / (5000 + 7142), rel=0.01)  # 7,142 requests a test
    assert sized.requests == int(second["ops_s"] * 2.0 / 2)
    long_enough = rounds.calibrated(SlowStart(), client.tool(), _endpoint(1), rounds.Settings(seconds=0.2), record)
    assert len(record["calibration"]) == 1 and long_enough.requests >= clients.RedisBenchmark.CALIBRATION


def _full(result: Result, host: str) -> Result:
    """RESULT as a saved run of host `host` has it."""
    return result.model_copy(update={"host": result.host.model_copy(update={"hostname": host})})


def test_compare_shows_each_paths_ratio_in_each_run():
    _, rows = compare.compare_table([("a", _full(RESULT, "a")), ("b", _full(RESULT, "b"))])
    by_label = {row[0]: row[1:] for row in rows}
    assert by_label["runc container, own netns (nsenter): ops/s against the native process"] == ["0.95x", "0.95x"]
    assert by_label["runc container, published port (docker-proxy): ops/s against the native process"] == ["0.40x"] * 2
    assert "gVisor container, own netns (nsenter): ops/s against the native process" not in by_label  # never measured
    assert by_label["microVM (TCG), QEMU user-mode networking (hostfwd): ops/s against the native process"] == [
        "0.06x",
        "0.06x",
    ]


def test_the_plot_has_a_bar_per_measured_path():
    """The throughput chart (the PNG's panel and the page's) has a row per path, each labelled
    with its side and the path's own name; a path not measured keeps its row, with no bar."""
    throughput = next(chart for chart in figures.CHARTS if chart.key == "throughput")
    result = _full(RESULT, "h")
    fig = figures.draw(throughput, result)
    labels = [label.get_text().split("\n") for label in fig.axes[0].get_yticklabels()]
    assert [(title, path.split(":")[0]) for title, path in labels] == [
        ("native process", "loopback (ip netns exec)"),
        ("runc container", "published port (docker-proxy)"),
        ("runc container", "own netns (nsenter)"),
        ("gVisor container", "published port (docker-proxy)"),
        ("gVisor container", "own netns (nsenter)"),
        ("microVM (TCG)", "QEMU user-mode networking (hostfwd)"),
    ]
    assert len(fig.axes[0].patches) == 5  # no bar for gVisor's own netns, not measured here
