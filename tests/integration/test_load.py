"""The load phase against the real engines: the same redis-benchmark on the native reference, a
runc container, a gVisor container and a microVM, each container on its published port and in
its own network namespace; whose system calls reach the host, checked against `ps -e` taken
while the run ran and against `strace -f -c` on the same process over the same window; every
load connection on loopback, read from the clients' own /proc while they ran; a workload killed
under load, and Ctrl-C during the load (on either path), leave nothing behind."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from explorer import lifecycle, readiness
from explorer.dockerd import docker_client
from explorer.load import client_for, native, rounds, trace
from explorer.model import LABEL_OWNER
from explorer.output import costs
from tests.conftest import (
    Explorer,
    backend_or_skip,
    containers_owned_by,
    ctrl_c_when,
    ps_e,
    run_explorer,
    skip_or_fail_in_ci,
    wait_for,
)
from tests.unit.documents import typed

pytestmark = [pytest.mark.docker, pytest.mark.slow]
GVISOR_ROLES = {"shim", "sandbox", "gofer", "stub", "proxy"}


@pytest.fixture(scope="module")
def counting_possible():
    why = trace.unavailable() or (None if shutil.which("redis-benchmark") else "redis-benchmark is not installed")
    if why:
        skip_or_fail_in_ci(f"the load phase cannot count here: {why}")


class Seen:
    """What `ps -e` and /proc showed while a run ran: PID -> every program it was seen running
    (a container's process is `runc init` before it becomes the workload), each process's
    network namespace, and each load client's TCP connections (its own sockets' local and
    remote addresses), by client PID."""

    def __init__(self) -> None:
        self.programs: dict[int, set[str]] = {}
        self.netns: dict[int, str] = {}
        self.connections: dict[int, set[tuple[str, str]]] = {}

    def sample(self) -> None:
        for pid, line in ps_e("args").items():
            program = Path(line.split(" ", 1)[0]).name
            self.programs.setdefault(pid, set()).add(program)
            with contextlib.suppress(OSError):
                self.netns.setdefault(pid, os.readlink(f"/proc/{pid}/ns/net"))
            if program == "redis-benchmark":
                self.connections.setdefault(pid, set()).update(tcp_connections(pid))

    def get(self, pid: int, default: set[str] | None = None) -> set[str] | None:
        return self.programs.get(pid, default)

    def __getitem__(self, pid: int) -> set[str]:
        return self.programs[pid]


def tcp_connections(pid: int) -> set[tuple[str, str]]:
    """(local address, remote address) of the process's own TCP sockets, from its network
    namespace's /proc tables (the kernel's view, not the client's)."""
    try:
        inodes = {
            link[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if (link := os.readlink(f"/proc/{pid}/fd/{fd}")).startswith("socket:[")
        }
        rows = [
            line.split()
            for table in ("tcp", "tcp6")
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        ]
    except OSError:  # it ended meanwhile
        return set()
    return {(_address(row[1]), _address(row[2])) for row in rows if row[9] in inodes}


def _address(text: str) -> str:
    """/proc/net/tcp's hex address (host byte order per 32-bit word) as an IP address."""
    raw = bytes.fromhex(text.split(":")[0])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    return str(getattr(address, "ipv4_mapped", None) or address)


def watch(*args: str, timeout: float = 1200) -> tuple[subprocess.CompletedProcess, Seen]:
    """Run the CLI, sampling `ps -e` and /proc while it runs."""
    proc = Explorer(*args)
    seen = Seen()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        seen.sample()
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen


@pytest.fixture(scope="module")
def loaded(counting_possible, docker_backend, libvirt_backend, redis_artifact, tmp_path_factory):
    backend_or_skip("gvisor")
    out = tmp_path_factory.mktemp("load") / "result.json"
    # the default 2-s rounds: the load phase's own time (at most 1.5x its rounds) is a promise
    # about them, and at 1 s its fixed parts (calibration, discovery, perf's start) weigh double
    done, seen = watch(
        "run", "redis", "--sides", "runc,gvisor,microvm", "--repeat", "1", "--detail", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    return {"doc": json.loads(out.read_text()), "text": done.stdout, "seen": seen}


def test_native_row_and_a_row_per_path_with_their_ratios(loaded):
    doc = loaded["doc"]
    native_rate = doc["load"]["native"]["summary"]["ops_s"]["median"]
    assert doc["load"]["native"]["status"] == "ok" and native_rate > 0
    _, rows = costs.costs_table(typed(doc))
    assert [row[:2] for row in rows] == [
        ["native process", "loopback (ip netns exec)"],
        ["runc container", "published port (docker-proxy)"],
        ["", "own netns (nsenter)"],
        ["gVisor container", "published port (docker-proxy)"],
        ["", "own netns (nsenter)"],
        ["microVM (TCG)", "QEMU user-mode networking (hostfwd)"],
    ]
    for (side, path, _ratio, *_), row in zip(costs.paths_of(typed(doc)), rows, strict=True):
        load = doc["load"]["native"] if side == "native" else doc["sides"][side]["load"]["paths"][path]
        assert load["status"] == "ok", (side, path, load)
        assert len(load["rounds"]) == 3 and all(r["ops"] > 0 for r in load["rounds"])
        assert row[3] == f"{load['summary']['ops_s']['median'] / native_rate:.2f}x"
    # the VM flagged wherever its figures show: the table, the notes, the document
    assert "microVM (TCG)" in loaded["text"] and "under TCG (software emulation)" in loaded["text"]
    assert doc["sides"]["microvm"]["load"]["note"].startswith("under TCG")
    assert doc["phases"]["reference_s"] > 0 and all(p["load_s"] > 0 for p in doc["phases"]["sides"].values())


def test_each_container_is_loaded_on_its_published_port_and_in_its_own_network_namespace(loaded):
    """The netns path's client ran in the namespace of the process its prefix names (the runc
    workload, gVisor's sandbox), which is not the host's, as the kernel showed while it ran."""
    seen = loaded["seen"]
    host = os.readlink("/proc/self/ns/net")
    for name, owner in (("runc", "redis-server"), ("gvisor", "runsc-sandbox")):
        load = loaded["doc"]["sides"][name]["load"]
        assert list(load["paths"]) == ["published port (docker-proxy)", "own netns (nsenter)"]
        assert (
            load["path"] == "published port (docker-proxy)"
            and load["summary"] == load["paths"][load["path"]]["summary"]
        )
        own = load["paths"]["own netns (nsenter)"]
        assert own["status"] == "ok" and own["endpoint"] == "127.0.0.1:6379" and own["relay"] is None
        pid = int(re.fullmatch(r"--net=/proc/(\d+)/ns/net", own["prefix"][1])[1])
        assert own["prefix"][0] == "nsenter" and owner in seen.get(pid, set()), (pid, seen.get(pid))
        clients = {seen.netns.get(client) for client in seen.connections}
        assert seen.netns[pid] != host and seen.netns[pid] in clients, (name, seen.netns[pid], clients)
        assert all(r["argv"][:2] == own["prefix"] for r in own["rounds"])
        # the published port's rounds: no prefix, the host's 127.0.0.1 and Docker's port
        published = load["paths"]["published port (docker-proxy)"]
        assert all(r["argv"][r["argv"].index("-h") + 1] == "127.0.0.1" for r in published["rounds"])


def test_every_load_connection_stayed_on_loopback(loaded):
    """Every TCP connection every load client held while the run ran (host namespace, a
    container's, the native reference's), as the kernel listed them: both ends on 127.0.0.0/8."""
    seen = loaded["seen"]
    connections = {pair for pairs in seen.connections.values() for pair in pairs}
    namespaces = {seen.netns.get(pid) for pid, pairs in seen.connections.items() if pairs}
    assert len(namespaces) >= 3, namespaces  # the host's, runc's and gVisor's sandbox's at least
    off = [pair for pair in connections if not all(ipaddress.ip_address(a).is_loopback for a in pair)]
    assert connections and off == [], off


def test_runc_in_its_own_namespace_costs_next_to_nothing_and_the_published_port_costs_the_rest(loaded):
    """The issue's check, as far as a shared 2-core host holds it. What holds under other jobs'
    CPU load is the work per operation: in its own namespace the runc workload makes the native
    server's host calls per operation and its side spends native's host CPU per operation; the
    published port adds docker-proxy's calls and several times that CPU. Throughput swings with
    the other jobs (the container's cgroup competes with the root cgroup's processes): its own
    netns served 1.30-2.02x its published port and 0.65-1.01x native in 1-2 s rounds here, so
    only its order is asserted (MACHINE_NOTES, by hand on a quieter host: ~55-60k own netns,
    ~21k published, ~46-57k native: the issue's 1.5x and 0.75x)."""
    doc = loaded["doc"]
    paths = doc["sides"]["runc"]["load"]["paths"]
    loads = {
        "own": paths["own netns (nsenter)"],
        "published": paths["published port (docker-proxy)"],
        "native": doc["load"]["native"],
    }
    rate = {name: load["summary"]["ops_s"]["median"] for name, load in loads.items()}
    cpu = {name: load["summary"]["host_cpu_s_per_1k_ops"]["median"] for name, load in loads.items()}
    calls = {name: load["traced"]["by_role"]["workload"]["per_op"] for name, load in loads.items()}
    proxy = loads["published"]["traced"]["by_role"]["proxy"]["per_op"]
    figures = f"ops/s {rate}, host CPU s per 1k ops {cpu}, workload calls per op {calls}, proxy calls per op {proxy}"
    assert rate["own"] > rate["published"], figures
    assert cpu["own"] <= 1.5 * cpu["native"] and abs(calls["own"] - calls["native"]) <= 0.25 * calls["native"], figures
    assert proxy >= 5 and cpu["published"] >= 2 * cpu["own"], figures
    print(
        f"runc own netns {rate['own'] / rate['published']:.2f}x its published port, {rate['own'] / rate['native']:.2f}x native; {figures}"
    )
    # the breakdown says it in words
    text = " ".join(loaded["text"].split())
    assert re.search(r"runc container: [\d.]+x native on own netns \(nsenter\), [\d.]+x on published port", text)


def test_a_vm_names_its_path(loaded):
    load = loaded["doc"]["sides"]["microvm"]["load"]
    assert list(load["paths"]) == ["QEMU user-mode networking (hostfwd)"] and load["status"] == "ok"
    assert "QEMU user-mode networking (hostfwd)" in " ".join(loaded["text"].split())


def test_no_load_phase_takes_more_than_one_and_a_half_times_its_rounds(loaded):
    doc = loaded["doc"]
    loads = {"native": doc["load"]["native"], **{name: side["load"] for name, side in doc["sides"].items()}}
    splits = {name: load["phase_split"] for name, load in loads.items()}
    assert all(split["ratio"] <= 1.5 for split in splits.values()), {
        n: (s["total_s"], s["needed_s"], s["ratio"]) for n, s in splits.items()
    }
    assert all(abs(load["phase_s"] - load["phase_split"]["total_s"]) < 0.01 for load in loads.values())
    assert "the load phase's own time, per side" in loaded["text"]


def test_gvisor_calls_reach_the_host_from_its_sandbox_not_from_a_workload(loaded):
    counted = loaded["doc"]["sides"]["gvisor"]["load"]["traced"]
    roles = counted["by_role"]
    assert set(roles) <= GVISOR_ROLES and "workload" not in roles, roles
    assert roles["sandbox"]["calls"] > 0 and roles["sandbox"]["per_op"] > 1
    # the stubs run the workload's code: its system calls stop in the Sentry (PTRACE_SYSEMU)
    assert roles["stub"]["per_op"] < 0.1 * roles["sandbox"]["per_op"], roles
    # each counted process was what ps -e showed under that PID while the run ran
    want = {"sandbox": "runsc-sandbox", "gofer": "runsc-gofer", "proxy": "docker-proxy"}
    for proc in counted["processes"]:
        if proc["role"] in want:
            assert want[proc["role"]] in loaded["seen"].get(proc["pid"], set()), proc


def test_runc_workload_calls_are_served_by_the_host_kernel(loaded):
    counted = loaded["doc"]["sides"]["runc"]["load"]["traced"]
    workload = counted["by_role"]["workload"]
    assert workload["calls"] > 0 and workload["per_op"] >= 1.5  # a read and a write per request, at least
    assert {"read", "write"} <= {name for name, _ in workload["top"]}
    seccomp = {p["role"]: p["seccomp"] for p in counted["processes"]}
    assert seccomp["workload"] == "filter"  # Docker's default profile, on the workload only
    want = {"workload": "redis-server", "proxy": "docker-proxy", "shim": "containerd-shim-runc-v2"}
    for proc in counted["processes"]:
        assert want[proc["role"]] in loaded["seen"].get(proc["pid"], set()), (proc, loaded["seen"].get(proc["pid"]))


def test_the_vm_guest_work_reaches_the_host_only_as_its_vmm(loaded):
    counted = loaded["doc"]["sides"]["microvm"]["load"]["traced"]
    assert set(counted["by_role"]) == {"VMM"}
    assert counted["by_role"]["VMM"]["calls"] > 0
    (vmm,) = counted["processes"]
    assert "qemu-system-x86_64" in loaded["seen"][vmm["pid"]]


def strace_summary(text: str) -> set[str]:
    """The syscall names of `strace -c`'s table (its last row, `total`, is none)."""
    rows = re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(?:\d+\s+)?([a-z_0-9]+)$", text, re.MULTILINE)
    return {m[1] for m in rows} - {"total"}


def counted_with_strace(pid: int, endpoint: rounds.Endpoint, client, tool: list[str]) -> tuple[set[str], set[str]]:
    """explorer's counting and `strace -f -c -p` on the same process over the same load."""
    strace = subprocess.Popen(
        ["strace", "-f", "-c", "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    counting = trace.Counting({pid: "workload"})
    try:
        time.sleep(1.0)  # strace attached to every thread
        counting.start()
        rounds.run_client(endpoint.prefix + client.argv(tool, endpoint.host, endpoint.port, 1), 120, endpoint)
        counted = counting.stop()
    finally:
        counting.abort()
        strace.send_signal(signal.SIGINT)
        _, err = strace.communicate(timeout=60)
    return set(counted["syscalls"]), strace_summary(err)


@pytest.fixture
def strace_present():
    if shutil.which("strace") is None:
        skip_or_fail_in_ci("strace is not installed (apt-get install strace; scripts/setup-host does)")


def test_distinct_calls_match_strace_on_the_runc_workload(
    counting_possible, strace_present, docker_backend, redis_scenario, redis_artifact
):
    run_id = lifecycle.new_run_id()
    target = docker_backend.create(redis_scenario, redis_artifact, run_id, 0)
    try:
        readiness.wait_ready("redis", "127.0.0.1", target.host_port, time.monotonic() + 60)
        (pid,) = [p for p in docker_backend.host_pids(target)]
        endpoint = rounds.Endpoint("127.0.0.1", target.host_port, dict, lambda: None, lambda: "")
        client = client_for(redis_scenario.load)  # 2000 requests of each test: a fixed small workload
        ours, theirs = counted_with_strace(pid, endpoint, client, client.tool())
    finally:
        docker_backend.destroy(target)
        docker_backend.clean(run_id)
    assert ours and ours == theirs, ours ^ theirs


def test_distinct_calls_match_strace_on_the_native_reference(
    counting_possible, strace_present, docker_backend, redis_scenario, redis_artifact
):
    root = native.unpacked_root(redis_scenario, redis_artifact)
    reference = native.NativeReference(redis_scenario, redis_artifact, root)
    try:
        endpoint = reference.start()
        (pid,) = list(endpoint.pids())
        client = client_for(redis_scenario.load)
        ours, theirs = counted_with_strace(pid, endpoint, client, client.tool())
    finally:
        reference.stop()
    assert ours and ours == theirs, ours ^ theirs
    assert not [n for n in native_namespaces() if n == reference.netns]


def native_namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(native.NETNS_PREFIX)]


def load_clients(programs: tuple[str, ...] = ("redis-benchmark", "perf")) -> list[int]:
    """redis-benchmark and perf processes, by the program they run (explorer starts them by path)."""
    return [pid for pid, args in ps_e("args").items() if Path(args.split(" ", 1)[0]).name in programs]


def side_load_clients() -> list[int]:
    """Load clients in the host's network namespace: a side's load, not the native reference's
    (whose client runs in the reference's own namespace). perf, which counts both from the
    host, is left out."""
    ours = os.readlink("/proc/self/ns/net")
    found = []
    for pid in load_clients(("redis-benchmark",)):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") == ours:
                found.append(pid)
    return found


def netns_load_clients() -> list[int]:
    """Load clients in a container's network namespace: neither the host's nor a native
    reference's (explorer-native-*, listed by `ip netns`)."""
    skip = {os.readlink("/proc/self/ns/net")}
    for name in native_namespaces():
        with contextlib.suppress(OSError):  # a bind mount of the namespace: its inode names it
            skip.add(f"net:[{os.stat(f'/run/netns/{name}').st_ino}]")
    found = []
    for pid in load_clients(("redis-benchmark",)):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") not in skip:
                found.append(pid)
    return found


def start_loaded_run(*extra: str) -> subprocess.Popen:
    return Explorer("run", "redis", "--sides", "runc", "--repeat", "1", "--format", "json", *extra)


@pytest.mark.parametrize("when", ["native", "side", "netns"])
def test_ctrl_c_during_the_load_leaves_nothing(counting_possible, docker_backend, redis_artifact, when):
    """Ctrl-C while redis-benchmark runs, against the native reference, against the side's
    published port or in the container's own network namespace: exit 130, and no container,
    load client, perf, native server, namespace or copy is left."""
    proc = start_loaded_run("--load-seconds", "1")
    pid = proc.pid
    loaded = {
        "side": lambda: containers_owned_by(pid) and side_load_clients(),
        "netns": lambda: containers_owned_by(pid) and netns_load_clients(),
        "native": lambda: load_clients() and native_namespaces(),
    }
    ctrl_c_when(proc, loaded[when], f"the load on the {when}")
    assert containers_owned_by(pid) == []
    assert load_clients() == []
    assert not [n for n in native_namespaces() if n.startswith(f"{native.NETNS_PREFIX}{pid}-")]
    assert not [a for a in ps_e("args").values() if "/.explorer/busybox" in a]  # no native server left


def test_a_workload_killed_under_load_is_a_failed_load_and_the_run_goes_on(
    counting_possible, docker_backend, redis_artifact
):
    proc = start_loaded_run("--load-seconds", "1")
    pid = proc.pid
    client = docker_client()
    try:
        assert wait_for(proc, lambda: containers_owned_by(pid) and side_load_clients()), "the side was never loaded"
        for container in client.containers.list(filters={"label": f"{LABEL_OWNER}={pid}"}):
            with contextlib.suppress(Exception):
                container.kill()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    side = json.loads(out)["sides"]["runc"]
    load = side["load"]
    assert load["status"] == "failed", load
    assert "died under the load" in load["reason"], load["reason"]
    assert "Ready to accept connections" in load["logs"]  # redis's own last log lines
    assert side["startup"]["repeats"] and side["visibility"]["visible_on_host"]  # the other figures kept
    assert containers_owned_by(pid) == [] and load_clients() == []


def test_no_load_skips_the_phase(docker_backend, redis_artifact, tmp_path: Path):
    out = tmp_path / "result.json"
    result = run_explorer("run", "redis", "--sides", "runc", "--repeat", "1", "--no-load", "--output", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["load"] is None and doc["sides"]["runc"]["load"] is None
    assert "What isolation costs" not in result.stdout
