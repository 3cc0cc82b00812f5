"""The load phase's pure logic: the clients read the field's tools' real output (captured on this
host into fixtures/load), the host's counts are read from perf stat's real output, `load:` is
validated like the rest of a scenario, and the cost tables say why a row has no figures. The
rounds run small fake clients (a Python one-liner as the tool) for the failure paths."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from explorer import scenario
from explorer.errors import ExplorerError, ScenarioError
from explorer.load import client_for, clients, rounds, trace
from explorer.loadspec import LoadSpec
from explorer.output import costs
from tests.unit.documents import partial

FIXTURES = Path(__file__).parent / "fixtures" / "load"


def test_redis_benchmark_csv_gives_rate_and_percentiles():
    client = clients.RedisBenchmark().sized(20000, 1)  # the request count the fixture was taken with
    assert client.requests == 10000
    got = client.parse((FIXTURES / "redis-benchmark.txt").read_text())
    assert got["ops"] == 20000
    # SET at 59171.60 rps and GET at 64516.13 rps, 10000 requests each
    assert got["seconds"] == pytest.approx(10000 / 59171.60 + 10000 / 64516.13)
    assert got["ops_s"] == pytest.approx(20000 / got["seconds"])
    assert got["p99_ms"] == 1.063 and got["p50_ms"] == 0.095
    assert got["detail"] == {"SET": 59171.60, "GET": 64516.13}


def test_redis_benchmark_is_sized_to_the_round_from_its_calibration():
    assert clients.RedisBenchmark().sized(5000, 2).requests == 5000
    assert clients.RedisBenchmark().sized(10, 2).requests == clients.RedisBenchmark.CALIBRATION  # never below


def test_pgbench_output_gives_transactions_and_average_latency():
    got = clients.PgBench().parse((FIXTURES / "pgbench.txt").read_text())
    assert got["ops"] == 10073
    assert got["ops_s"] == pytest.approx(10459.879565)
    assert got["latency_avg_ms"] == 0.382
    assert got["p99_ms"] is None  # pgbench reports no percentile without --log: said as missing


def test_wrk_output_gives_rate_and_percentiles_in_ms():
    got = clients.Wrk().parse((FIXTURES / "wrk.txt").read_text())
    assert got["ops"] == 1132 and got["seconds"] == 1.0
    assert got["ops_s"] == 1131.01
    assert got["p50_ms"] == 3.08 and got["p99_ms"] == 9.89
    assert clients.Wrk().parse("  10 requests in 500.00ms, 1KB read\nRequests/sec: 20.00\n")["seconds"] == 0.5


@pytest.mark.parametrize("client", [clients.RedisBenchmark(), clients.PgBench(), clients.Wrk()])
def test_a_client_that_printed_no_results_is_an_error_not_a_zero(client: clients.Client):
    with pytest.raises(ValueError, match="printed no results"):
        client.parse("Could not connect to Redis at 127.0.0.1:6379: Connection refused\n")


def test_client_argv_carries_host_port_and_the_round():
    argv = clients.Wrk(connections=3, path="/x").argv(["wrk"], "127.0.0.1", 8080, 2.4)
    assert argv[-1] == "http://127.0.0.1:8080/x" and argv[argv.index("-c") + 1] == "3" and "2s" in argv
    pg = clients.PgBench(scale=2).init_argv(["pgbench"], "127.0.0.1", 5432)
    assert pg[pg.index("-s") + 1] == "2" and pg[pg.index("-p") + 1] == "5432"


def test_perf_stat_counts_are_read_by_name_with_the_total():
    total, named, exits = trace.parse_stat((FIXTURES / "perf-stat-redis.txt").read_text())
    assert total == 47070
    assert named["write"] == 20001 and named["read"] == 20029
    assert all(count > 0 for count in named.values())  # the zero counters are not calls made
    assert exits is None  # KVM exits were not counted
    assert sum(named.values()) <= total


def test_perf_stat_not_counted_and_kvm_exits():
    text = (
        "<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n"
        "12,,raw_syscalls:sys_enter,10,100.00,,\n"
        "<not supported>,,syscalls:sys_enter_read,0,100.00,,\n"
        "7,,syscalls:sys_enter_ppoll,10,100.00,,\n"
        "300,,kvm:kvm_exit,10,100.00,,\n"
    )
    assert trace.parse_stat(text) == (12, {"ppoll": 7}, 300)


def test_counts_by_role_add_up_and_an_empty_role_output_is_an_error():
    redis = (FIXTURES / "perf-stat-redis.txt").read_text()
    pg = (FIXTURES / "perf-stat-postgres.txt").read_text()
    got = trace.figures({"workload": redis, "proxy": pg})
    assert got["calls"] == got["by_role"]["workload"]["calls"] + got["by_role"]["proxy"]["calls"]
    assert got["distinct"] == len(got["syscalls"])
    assert list(got["syscalls"].values()) == sorted(got["syscalls"].values(), reverse=True)
    with pytest.raises(OSError, match="printed no count"):
        trace.figures({"workload": "Error: No permissions to read /sys/kernel/tracing/events/raw_syscalls\n"})


def test_a_roles_several_perfs_add_up_to_one_role():
    """A role whose threads need more counters than one perf may open is counted by several
    (role, role#2, ...): its figures are their sums, under the role's own name."""
    redis = (FIXTURES / "perf-stat-redis.txt").read_text()
    pg = (FIXTURES / "perf-stat-postgres.txt").read_text()
    apart = trace.figures({"a": redis, "b": pg})
    got = trace.figures({"stub": redis, "stub#2": pg})
    assert set(got["by_role"]) == {"stub"}
    assert got["calls"] == got["by_role"]["stub"]["calls"] == apart["calls"]
    assert got["syscalls"] == apart["syscalls"] == got["by_role"]["stub"]["syscalls"]


def test_pids_are_split_so_that_each_perf_opens_fewer_files_than_its_limit():
    """360 events on every thread of 60 threads is 21,600 counters: past a 20,000 limit, so two
    perfs; each part's threads times the events stay within it. Live processes of this test."""
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(3)]
    try:
        pids = [c.pid for c in children]  # one thread each
        assert trace.parts_within(pids, 360, 20_000) == [pids]
        assert trace.parts_within(pids, 360, 256 + 2 * 360) == [pids[:2], pids[2:]]
        assert trace.parts_within(pids, 360, 10) == [[pid] for pid in pids]  # one each at the least
        assert trace.parts_within([], 360, 20_000) == []
    finally:
        for child in children:
            child.kill()
            child.wait()


def _scenario(tmp_path: Path, **changes: Any) -> scenario.Scenario:
    data = yaml.safe_load((scenario.SCENARIO_DIR / "redis.yaml").read_text())
    data.update(changes)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return scenario.load_file(path)


def test_load_defaults_from_readiness_and_can_be_turned_off(tmp_path: Path):
    assert _scenario(tmp_path).load == LoadSpec.from_data("redis")
    assert _scenario(tmp_path, load=False).load is None
    given = _scenario(tmp_path, load={"redis": {"clients": 4}}).load
    assert given is not None and client_for(given) == clients.RedisBenchmark(clients=4)


def test_bad_load_entries_are_reported_with_their_path(tmp_path: Path):
    with pytest.raises(ScenarioError) as err:
        _scenario(tmp_path, load={"redis": {"clients": 0, "colour": "blue"}})
    assert "load" in "\n".join(err.value.problems)
    with pytest.raises(ScenarioError):
        _scenario(tmp_path, load="memcached-flood")


def test_a_missing_tool_names_its_package_and_the_load_is_skipped():
    class Missing(clients.Wrk):
        TOOL = "explorer-no-such-load-tool"
        PACKAGE = "explorer-load-tools"

    with pytest.raises(clients.LoadToolMissing) as err:
        Missing().tool()
    assert "explorer-load-tools" in err.value.hint
    got = rounds.measure(Missing(), _endpoint(), rounds.Settings(seconds=0.1, rounds=1, trace=False))
    assert got["status"] == "skipped" and "explorer-no-such-load-tool" in got["reason"]


class OneLiner(clients.Client):
    """A fake client: a Python one-liner as its tool, reading back what it printed."""

    KIND = "fake"

    def __init__(self, code: str) -> None:
        self.code = code

    def tool(self, rootfs: Path | None = None) -> list[str]:
        return [sys.executable, "-c", self.code]

    def argv(self, tool: list[str], host: str, port: int, seconds: float) -> list[str]:
        return tool

    def parse(self, out: str) -> dict[str, Any]:
        ops = int(out.split()[0])
        return {"ops": ops, "seconds": 1.0, "ops_s": float(ops), "p50_ms": None, "p99_ms": None, "detail": {}}

    def params(self) -> dict[str, Any]:
        return {}


def _endpoint(dead: bool = False) -> rounds.Endpoint:
    def alive() -> None:
        if dead:
            raise ExplorerError("the container exited with code 137")

    return rounds.Endpoint("127.0.0.1", 1, dict, alive, lambda: "last log line")


def test_rounds_give_median_and_spread():
    got = rounds.measure(OneLiner("print(1000)"), _endpoint(), rounds.Settings(seconds=0.1, rounds=3, trace=False))
    assert got["status"] == "ok"
    assert got["summary"]["ops_s"] == {"median": 1000.0, "min": 1000.0, "max": 1000.0, "n": 3}
    assert len(got["rounds"]) == 3
    assert got["traced"] == {"available": False, "reason": "counting was not asked for"}


def test_a_workload_dead_under_load_is_a_failed_load_with_its_logs():
    got = rounds.measure(OneLiner("raise SystemExit(1)"), _endpoint(dead=True), rounds.Settings(0.1, 1, False))
    assert got["status"] == "failed"
    assert "died under the load" in got["reason"] and "137" in got["reason"]
    assert got["logs"] == "last log line"


def test_a_client_that_fails_on_its_own_says_what_it_printed():
    got = rounds.measure(
        OneLiner("import sys; sys.exit('connection refused')"), _endpoint(), rounds.Settings(0.1, 1, False)
    )
    assert got["status"] == "failed" and "connection refused" in got["reason"]


def _load(rate: float, per_op: float | None = None, **extra: Any) -> dict[str, Any]:
    traced = {"available": False, "reason": "counting was not asked for"}
    if per_op is not None:
        traced = {
            "available": True,
            "method": trace.METHOD,
            "ops": 100,
            "per_op": per_op,
            "distinct": 2,
            "syscalls": {"read": 100, "write": 100},
            "by_role": {"workload": {"calls": 200, "distinct": 2, "per_op": per_op}},
            "processes": [{"pid": 1, "role": "workload", "seccomp": "filter", "seccomp_filters": 1}],
        }
    spread = {"median": rate, "min": rate, "max": rate, "n": 3}
    return {"status": "ok", "summary": {"ops_s": spread}, "traced": traced, **extra}


def test_cost_tables_give_ratios_and_number_what_is_missing():
    raw = {
        "load": {
            "settings": {"seconds_per_round": 1, "rounds": 3, "traced_round": True},
            "client": "redis-benchmark",
            "native": _load(1000.0, 2.0),
        },
        "sides": {
            "runc": {"kind": "container", "title": "runc container", "load": _load(500.0, 4.0)},
            "microvm": {
                "kind": "vm",
                "title": "microVM",
                "load": _load(100.0, note="under TCG (software emulation) ..."),
            },
            "gvisor": {"kind": "container", "title": "gVisor", "load": {"status": "failed", "reason": "it died"}},
        },
    }
    result = partial(raw)
    _, rows = costs.costs_table(result)
    by_side = {row[0]: row for row in rows}  # a result saved before loads had paths: one path a side
    assert {row[1] for row in rows} == {"the side's port"}
    assert by_side["native process"][3] == "1.00x"
    assert by_side["runc container"][3] == "0.50x" and by_side["runc container"][4] == "1.00x"
    assert by_side["microVM (TCG)"][3] == "0.10x" and by_side["microVM (TCG)"][4] == "0.20x"
    assert by_side["gVisor"][2] == "failed [1]"
    notes = costs.cost_notes(result)
    assert any(note.startswith("(TCG)") for note in notes)
    assert notes[-1] == "[1] gVisor, the side's port: failed: it died"
    _, surface = costs.surface_table(result)
    surface_by_side = {row[0]: row for row in surface}
    assert surface_by_side["runc container"][1] == "4.00"
    assert surface_by_side["runc container"][5] == "workload: filter (1)"
    assert surface_by_side["microVM (TCG)"][1] == "- [1]"  # not counted: the reason is the note
    surface_notes = costs.surface_notes(result)
    assert "[1] microVM: not measured: counting was not asked for" in surface_notes
    assert "[2] gVisor: failed: it died" in surface_notes


def test_a_death_the_engine_sees_late_is_still_named_and_a_live_workload_is_not():
    """The client sees the server die before the engine's state says so: the workload is
    asked again for a moment before the failure is called the client's."""
    calls = []

    def dies_on_the_third_look() -> None:
        calls.append(1)
        if len(calls) >= 3:
            raise ExplorerError("the container exited with code 137")

    endpoint = rounds.Endpoint("127.0.0.1", 1, dict, dies_on_the_third_look, lambda: "its logs")
    with pytest.raises(rounds.LoadFailed, match="died under the load: the container exited with code 137"):
        rounds.died_or_not(endpoint, settle_s=5)
    alive = rounds.Endpoint("127.0.0.1", 1, dict, lambda: None, str)
    rounds.died_or_not(alive, settle_s=0.3)  # returns: the failure is the client's own


def test_a_process_the_workload_starts_during_a_round_counts_in_its_host_cpu():
    """fio's server forks its job processes per round: listed only after the round, their CPU
    still counts (no process was listed before the round)."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"
    burner = subprocess.Popen([sys.executable, "-c", burn])
    listings: list[dict[int, str]] = [{}]  # before the round: nothing yet

    def pids() -> dict[int, str]:
        return listings.pop(0) if listings else {burner.pid: "workload"}

    endpoint = rounds.Endpoint("127.0.0.1", 1, pids, lambda: None, str)
    try:
        time.sleep(0.6)  # it burns its CPU
        settings = rounds.Settings(seconds=0.1, rounds=1, trace=False)
        client = OneLiner("print(1000)")
        got = rounds.one_round(client, client.tool(), endpoint, settings)
    finally:
        burner.kill()
        burner.wait()
    assert got["host_cpu_by_role_s"]["workload"] >= 0.25
