"""The userns side against real Podman: the host sees redis-server under a host UID other than 0
while it is the image's user inside; its capabilities count for nothing in the host's user
namespace; the standard load reaches it on both paths; nothing is left after a run, a failure,
Ctrl-C, or a run killed with SIGKILL and then `explorer clean`.

Facts are read with tools independent of explorer: /proc, `podman ps` and `podman exec`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import docker
import pytest
import yaml

from explorer import lifecycle
from tests.conftest import ROOT, Explorer, backend_or_skip, ctrl_c_when, host_leftovers, run_explorer

pytestmark = pytest.mark.docker

LABEL = "io.explorer.managed=true"


@pytest.fixture(scope="module")
def userns_backend():
    return backend_or_skip("userns")


def podman_leftovers(owner: int | None = None) -> list[str]:
    """explorer's containers in Podman, as `podman ps -a` lists them (of one owner's run)."""
    argv = ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={LABEL}"]
    if owner is not None:
        argv += ["--filter", f"label=io.explorer.owner={owner}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.split()


def conmons_of(names: list[str]) -> list[int]:
    """conmon processes (the container's monitor on the host) of containers named `names`."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and any(n.encode() in argv for n in names):
            found.append(pid)
    return found


def read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in handle)}


def test_the_host_sees_redis_under_a_mapped_uid_without_power_over_the_host(
    userns_backend, redis_scenario, redis_artifact
):
    backend = userns_backend
    artifact = backend.prepare(redis_scenario)
    target = backend.create(redis_scenario, artifact, lifecycle.new_run_id(), 0)
    try:
        lifecycle.wait_until_ready(backend, redis_scenario, target, time.monotonic())
        (pid,) = [p for p in backend.host_pids(target) if read(f"/proc/{p}/comm").strip() == "redis-server"]
        host_uid = int(status(pid)["Uid"].split()[1])
        inside, outside, _count = (int(x) for x in read(f"/proc/{pid}/uid_map").split())
        assert host_uid != 0 and outside != 0  # neither the workload nor root inside is the host's root
        id_inside = subprocess.run(
            ["podman", "exec", target.name, "id", "-u", "redis"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert host_uid == outside + int(id_inside) - inside  # the image's redis user, mapped
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        probe = lifecycle.probe(backend, redis_scenario, artifact, target)["identity"]
        assert probe["host_uid"] == host_uid and probe["root_host_uid"] == outside
        assert probe["own_user_namespace"] is True and probe["capabilities_over_host"] == []
        # root inside (an exec) holds capabilities, which stop at its own user namespace
        assert "net_bind_service" in probe["capabilities"] or probe["uid_inside"] != 0
        with open("/proc/sys/kernel/overflowuid") as handle:
            assert host_uid != int(handle.read())
    finally:
        backend.destroy(target)
    assert target.name not in podman_leftovers()


NET_KINDS = ("network namespaces", "veth interfaces", "CNI reservations")


def net_plumbing() -> dict[str, set[str]]:
    """The host's network namespaces, veths and CNI reservations (`ip`, the CNI directory)."""
    found = host_leftovers()
    return {kind: found[kind] for kind in NET_KINDS}


@contextlib.contextmanager
def run_netns_not_shared() -> Iterator[None]:
    """/run/netns as a new host has it: no shared mount point (made private where it is a mount
    point, shared again after; never unmounted, so no namespace in it is lost)."""
    mounted = subprocess.run(["findmnt", "-n", "/run/netns"], capture_output=True, check=False).returncode == 0
    if mounted:
        subprocess.run(["mount", "--make-rprivate", "/run/netns"], check=True)
    try:
        yield
    finally:
        if mounted:
            subprocess.run(["mount", "--make-rshared", "/run/netns"], check=True)


def test_podman_tears_down_the_namespace_of_a_killed_workload_on_a_new_host(
    userns_backend, redis_scenario, redis_artifact
):
    """The first run on a new host leaked one namespace, veth and address per container: conmon's
    `podman container cleanup` never saw the namespace. Killed and cleaned up by Podman alone
    (before explorer removes anything), the container must leave none of them."""
    backend, before = userns_backend, net_plumbing()
    with run_netns_not_shared():
        target = backend.create(redis_scenario, redis_artifact, lifecycle.new_run_id(), 0)
        try:
            lifecycle.wait_until_ready(backend, redis_scenario, target, time.monotonic())
            (inspected,) = json.loads(subprocess.check_output(["podman", "inspect", target.name], timeout=60))
            netns, pid = inspected["NetworkSettings"]["SandboxKey"], inspected["State"]["Pid"]
            monitors = conmons_of([target.name])
            assert netns.startswith("/run/netns/") and monitors
            os.kill(pid, signal.SIGKILL)  # the workload dies; conmon runs `podman container cleanup`
            deadline = time.monotonic() + 30
            while conmons_of([target.name]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not conmons_of([target.name]), "conmon did not finish its cleanup"
            assert not os.path.exists(netns), f"Podman's cleanup left {netns}"
        finally:
            backend.destroy(target)
    assert net_plumbing() == before


def exec_conmons(name: str) -> list[int]:
    """conmons of the container's exec sessions (`--exec-attach` in their command line)."""
    found = []
    for pid in conmons_of([name]):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as handle:
            if b"--exec-attach" in handle.read().split(b"\0"):
                found.append(pid)
    return found


def test_no_conmon_outlives_its_container(userns_backend, redis_scenario, redis_artifact):
    """Podman keeps an exec's conmon for 5 minutes after the exec ended (its exit_command_delay).
    The guest view's exec, and one still running when the container goes (an interrupted view's),
    end before the container does; its own conmon is gone when destroy returns."""
    backend = userns_backend
    target = backend.create(redis_scenario, redis_artifact, lifecycle.new_run_id(), 0)
    client = docker.DockerClient(base_url="unix:///run/podman/podman.sock", timeout=120)  # an exec of its own

    def interrupted_exec() -> None:
        with contextlib.suppress(docker.errors.APIError):  # its process is killed: the exec fails
            client.containers.get(target.name).exec_run(["sleep", "60"])

    running = threading.Thread(target=interrupted_exec)
    try:
        lifecycle.wait_until_ready(backend, redis_scenario, target, time.monotonic())
        backend.guest_view(target)  # explorer's exec, finished
        running.start()
        deadline = time.monotonic() + 30
        while len(exec_conmons(target.name)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(exec_conmons(target.name)) >= 2, "the exec sessions' conmons were not seen"
    finally:
        backend.destroy(target)
    assert conmons_of([target.name]) == []
    running.join(timeout=30)
    assert not running.is_alive()
    assert target.name not in podman_leftovers()


def test_a_run_loads_both_paths_and_leaves_nothing(userns_backend, redis_artifact, tmp_path):
    out = tmp_path / "result.json"
    result = run_explorer(
        "run", "redis", "--sides", "userns", "--repeat", "1", "--load-seconds", "1", "--output", str(out)
    )
    assert result.returncode == 0, result.stderr
    side = json.loads(out.read_text())["sides"]["userns"]
    paths = side["load"]["paths"]
    assert len(paths) == 2, paths
    for name, path in paths.items():  # the published port, and the container's own netns
        assert path["status"] == "ok" and path["summary"]["ops_s"]["median"] > 0, name
    assert side["identity"]["own_user_namespace"] is True and side["identity"]["host_uid"] != 0
    assert podman_leftovers() == []


def scenario_file(tmp_path, **workload) -> str:
    """The redis scenario with some of its workload's fields changed (timeouts: the scenario's)."""
    data = yaml.safe_load((ROOT / "scenarios" / "redis.yaml").read_text())
    if "timeouts" in workload:
        data["timeouts"] = workload.pop("timeouts")
    data["workload"].update(workload)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_workload_that_exits_leaves_nothing(userns_backend, redis_artifact, tmp_path):
    path = scenario_file(tmp_path, command=["redis-server", "--no-such-option"])
    result = run_explorer("run", "--scenario-file", path, "--sides", "userns", "--repeat", "1", "--no-load")
    assert result.returncode == 1, result.stderr
    assert "exited with code" in result.stderr
    assert podman_leftovers() == []


def test_a_command_that_does_not_exist_is_refused_in_podmans_name(userns_backend, redis_artifact, tmp_path):
    """The engine that refused is Podman (with runc): the error says so, and never Docker."""
    path = scenario_file(tmp_path, command=["/no/such/command"])
    result = run_explorer("run", "--scenario-file", path, "--sides", "userns", "--repeat", "1", "--no-load")
    assert result.returncode == 1, result.stderr
    assert "Podman (runc) could not start explorer-" in result.stderr, result.stderr
    assert "Docker" not in result.stderr and "docker" not in result.stderr
    assert podman_leftovers() == []


def test_ctrl_c_during_the_start_leaves_no_container_netns_or_process(userns_backend, redis_artifact):
    netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    proc = Explorer("run", "redis", "--sides", "userns", "--repeat", "50", "--no-load")
    seen: list[str] = []

    def a_container() -> list[str]:
        seen[:] = podman_leftovers(proc.pid)
        return seen

    ctrl_c_when(proc, a_container, "a container", timeout=60, every=0.02, exit_s=60)
    assert podman_leftovers(proc.pid) == []
    assert conmons_of(seen) == []
    netns_after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert netns_after <= netns_before


def test_clean_after_sigkill_removes_the_dead_runs_container_only(userns_backend, redis_artifact, tmp_path):
    # Redis never answers a PostgreSQL startup message: each run holds its container while it waits
    path = scenario_file(tmp_path, ready="postgres", timeouts={"ready_s": 90})
    argv = ("run", "--scenario-file", path, "--sides", "userns", "--repeat", "1", "--no-load")
    live, dead = Explorer(*argv), Explorer(*argv)
    try:
        deadline = time.monotonic() + 60
        while not (podman_leftovers(dead.pid) and podman_leftovers(live.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        dead.kill()  # SIGKILL: no handler runs, its container stays
        dead.wait(timeout=30)
        left = podman_leftovers(dead.pid)
        assert left, "the killed run left nothing to clean"
        (live_netns,) = [sandbox_of(name) for name in podman_leftovers(live.pid)]
        result = run_explorer("clean")
        assert result.returncode == 0, result.stderr
        assert podman_leftovers(dead.pid) == [] and conmons_of(left) == []
        assert all(name in result.stdout for name in left)
        assert live.poll() is None, live.communicate(timeout=60)  # the live run was spared and waits on
        assert podman_leftovers(live.pid)
        assert live_netns in netns_paths() and live_netns not in result.stdout  # its namespace too
    finally:
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
    assert podman_leftovers(live.pid) == []


def sandbox_of(name: str) -> str:
    """The container's network namespace, as `podman inspect` says."""
    (inspected,) = json.loads(subprocess.check_output(["podman", "inspect", name], timeout=60))
    return inspected["NetworkSettings"]["SandboxKey"]


def netns_paths() -> set[str]:
    return {f"/run/netns/{name}" for name in net_plumbing()["network namespaces"]}


def test_clean_after_sigkill_removes_the_network_podman_left_of_the_dead_run(userns_backend, redis_artifact, tmp_path):
    """A run killed with SIGKILL, then its workload, where Podman leaks (a new host's /run/netns):
    `explorer clean` removes the namespace, its veth, its address and its rules, from the records
    the run wrote when its container started."""
    before = net_plumbing()
    path = scenario_file(tmp_path, ready="postgres", timeouts={"ready_s": 90})  # holds its container
    # explorer in a mount namespace of its own: the /run/netns it makes shared there is not the
    # host's, where Podman mounts the namespaces, so Podman leaks as on a new host
    unshared = ("unshare", "--mount", "--propagation", "private", "--")
    with run_netns_not_shared():
        dead = Explorer(
            "run", "--scenario-file", path, "--sides", "userns", "--repeat", "1", "--no-load", prefix=unshared
        )
        try:
            deadline = time.monotonic() + 60
            while not podman_leftovers(dead.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            (name,) = podman_leftovers(dead.pid)
            (inspected,) = json.loads(subprocess.check_output(["podman", "inspect", name], timeout=60))
            netns = inspected["NetworkSettings"]["SandboxKey"]
            dead.kill()
            dead.wait(timeout=30)
            os.kill(inspected["State"]["Pid"], signal.SIGKILL)  # conmon's cleanup runs, and leaks
            deadline = time.monotonic() + 30
            while conmons_of([name]) and time.monotonic() < deadline:
                time.sleep(0.05)
            leaked = net_plumbing()
            assert netns in netns_paths(), "Podman tore the namespace down: nothing to clean"
            result = run_explorer("clean")
        finally:
            if dead.poll() is None:
                dead.kill()
    assert result.returncode == 0, result.stderr
    assert f"network namespace {netns}" in result.stdout
    for kind in NET_KINDS:
        for item in leaked[kind] - before[kind]:
            assert item.rsplit("/")[-1] in result.stdout, f"{kind} {item} not named"
    assert net_plumbing() == before
    assert podman_leftovers(dead.pid) == []
