"""Docker as an engine: the docker SDK drives dockerd, psutil finds what it started.

The OCI runtime is a part of its own (runc below; gVisor's runsc in engines/runsc.py): which
host processes belong to a container, and which milestones the host can see, differ by it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from typing import Any, Protocol

import psutil
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from explorer.contracts import DoctorCheck, EngineDefaults
from explorer.dockerd import START_HINT, docker_client
from explorer.engines.storage import overlay_storage
from explorer.errors import BackendError, BackendUnavailable
from explorer.guest.handles import RunningContainer
from explorer.model import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_RECIPE,
    LABEL_RUN,
    LABEL_SCENARIO,
    Artifact,
    NetPath,
    Side,
    Target,
    owner_alive,
)
from explorer.scenario import Scenario

PUBLISHED = "published port (docker-proxy)"
EXEC_END_S = 5.0  # how long destroy waits for a killed exec process to be gone
OWN_NETNS = "own netns (nsenter)"


class Runtime(Protocol):
    """The OCI runtime's part: its name for dockerd, what the host sees of a container."""

    @property
    def name(self) -> str | None:
        """Its name for dockerd; None: the engine's default (runc)."""

    @property
    def milestones(self) -> tuple[str, ...]: ...

    @property
    def order(self) -> tuple[tuple[str, ...], ...]:
        """The timeline check's chains."""

    def check(self, info: dict[str, Any]) -> dict[str, Any]: ...
    def doctor_checks(self, engine: DockerEngine) -> list[DoctorCheck]: ...
    def poll(self, target: Target[RunningContainer]) -> None: ...
    def host_pids(self, target: Target[RunningContainer]) -> list[int]: ...
    def runtime_pids(self, target: Target[RunningContainer]) -> dict[int, str]: ...
    def netns_path(self, target: Target[RunningContainer], port: int, engine: DockerEngine) -> NetPath: ...
    def after_destroy(self, target: Target[RunningContainer]) -> None: ...
    def clean(self, known: set[str]) -> list[str]: ...


class DockerEngine(EngineDefaults[RunningContainer]):
    """A container started by dockerd with one OCI runtime."""

    name = "docker"
    daemons: tuple[str, ...] = ("dockerd", "containerd", "docker-proxy")  # docker-proxy: one per published port
    title = "Docker"  # the engine its errors name (PodmanEngine's: Podman and its runtime)
    cli = "docker"  # the command a user would type to do by hand what explorer did
    start_hint = START_HINT

    def __init__(self, side: Side, runtime: Runtime) -> None:
        self.side, self.runtime = side, runtime  # the side: to name what it makes
        self.milestones = runtime.milestones

    @property
    def order(self) -> tuple[tuple[str, ...], ...]:
        return self.runtime.order

    @property
    def client(self) -> Any:
        return docker_client()

    def check(self) -> dict[str, Any]:
        version, info = self.client.version(), self.client.info()
        facts = {
            "engine": "docker",
            "engine_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "default_runtime": info.get("DefaultRuntime"),
            "runtime": self.runtime.name or info.get("DefaultRuntime"),
        }
        facts.update(self.runtime.check(info))
        facts["summary"] = f"Docker {facts['engine_version']} ({facts.get('runtime_summary') or facts['runtime']})"
        return facts

    def doctor_checks(self) -> list[DoctorCheck]:
        return self.runtime.doctor_checks(self)

    def describe(self) -> str:
        facts = self.check()
        return f"Docker {facts['engine_version']} (API {facts['api_version']}, {facts['storage_driver']})"

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[RunningContainer]:
        port = scenario.workload.port
        labels = {
            LABEL_MANAGED: "true",
            LABEL_RUN: run_id,
            LABEL_SCENARIO: scenario.name,
            LABEL_OWNER: str(os.getpid()),
        }  # `explorer clean` spares the containers of a live run
        if LABEL_RECIPE in artifact.labels:
            labels[LABEL_RECIPE] = artifact.labels[LABEL_RECIPE]
        side = self.side.name
        target: Target[RunningContainer] = Target(
            side=side, name=f"explorer-{scenario.name}-{side}-{run_id}-{index}", run_id=run_id, host_port=0
        )
        try:
            container = self.new_container(scenario, artifact, target, labels)
            target.handle = RunningContainer(container, port, tuple(scenario.workload.processes))
            target.mark("created")
            container.start()
            target.mark("started")
            container.reload()
        except APIError as exc:
            raise BackendError(f"{self.title} could not start {target.name}: {exc.explanation or exc}") from exc
        target.facts["container_id"] = container.id  # the record: what `docker inspect` takes
        target.held.init_pid = container.attrs["State"]["Pid"]
        self.started(target)
        # A workload that exits at once may be gone before Docker reports its port: say that it
        # exited (code, logs), not that no port was published.
        self.raise_if_exited(target, reload=False)
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        if not bindings:
            self.raise_if_exited(target, wait_s=2.0)
            raise BackendError(f"{self.title} published no host port for {port}/tcp of {target.name}")
        target.host_port = int(bindings[0]["HostPort"])
        self.poll(target)
        return target

    def new_container(
        self, scenario: Scenario, artifact: Artifact, target: Target[RunningContainer], labels: dict[str, str]
    ) -> Container:
        """The container, created (not started): the workload's port published on 127.0.0.1 only."""
        return self.client.containers.create(
            artifact.ref,
            command=list(scenario.workload.command) or None,
            name=target.name,
            labels=labels,
            ports={f"{scenario.workload.port}/tcp": ("127.0.0.1", None)},
            security_opt=["no-new-privileges"],
            runtime=self.runtime.name,
            detach=True,
        )

    def started(self, target: Target[RunningContainer]) -> None:
        """What the engine writes down of a container it has just started (Docker: nothing)."""

    def poll(self, target: Target[RunningContainer]) -> None:
        """The runtime's milestones; raise (with the logs) as soon as the container has exited."""
        init_pid = target.held.init_pid
        if not init_pid or not psutil.pid_exists(init_pid):
            self.raise_if_exited(target)
            return
        self.runtime.poll(target)

    def raise_if_exited(self, target: Target[RunningContainer], reload: bool = True, wait_s: float = 0.0) -> None:
        """Raise with the exit code and the last log lines if the container has stopped; with
        `wait_s`, wait that long for a stop Docker has not recorded yet (its PID is gone)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if reload:
                    target.held.container.reload()
            except NotFound:
                raise BackendError(
                    f"the container {target.name} was removed while it ran ({self.cli} rm, or a "
                    "`explorer clean` of an older explorer)"
                ) from None
            except DockerException as exc:
                raise BackendError(f"{self.title} could not inspect {target.name}: {exc}") from exc
            state = target.held.container.attrs["State"]
            if state.get("Status") in {"exited", "dead"}:
                logs = self.logs(target)
                raise BackendError(
                    f"the workload exited with code {state.get('ExitCode')} before it was ready "
                    f"(container {target.name})",
                    hint=("its last log lines:\n" + logs) if logs else "it printed nothing",
                )
            if time.monotonic() >= deadline:
                return
            reload = True
            time.sleep(0.1)

    def host_pids(self, target: Target[RunningContainer]) -> list[int]:
        return self.runtime.host_pids(target)

    def runtime_pids(self, target: Target[RunningContainer]) -> dict[int, str]:
        return self.runtime.runtime_pids(target)

    def path_pids(self, target: Target[RunningContainer]) -> dict[int, str]:
        """Docker's userland proxy of the published port: every byte from 127.0.0.1 goes through
        it (one docker-proxy per published port and address)."""
        wanted = ["-host-port", str(target.host_port)]
        found = {}
        for proc in psutil.process_iter(["name", "cmdline"]):
            argv = proc.info["cmdline"] or []
            if proc.info["name"] == "docker-proxy" and any(argv[i : i + 2] == wanted for i in range(len(argv))):
                found[proc.pid] = "proxy"
        return found

    def load_paths(self, target: Target[RunningContainer]) -> list[NetPath]:
        """Two: the port Docker published on 127.0.0.1 (its userland proxy relays every byte),
        as a user reaches the container; and the container's own loopback, the client joining
        its network namespace, which shows the isolation without the port-publishing path."""
        port = target.held.workload_port
        published = NetPath(
            PUBLISHED,
            f"Docker's port published on the host's 127.0.0.1:{target.host_port}: docker-proxy, Docker's "
            f"userland proxy, relays every byte to the container's port {port}",
            target.host_port,
            relay="docker-proxy",
        )
        return [published, self.runtime.netns_path(target, port, self)]

    def logs(self, target: Target[RunningContainer], lines: int = 20) -> str:
        if target.handle is None:
            return ""
        try:
            return target.handle.container.logs(tail=lines).decode(errors="replace").rstrip()
        except DockerException:
            return ""

    def destroy(self, target: Target[RunningContainer]) -> None:
        """Its exec sessions ended first (none outlives the container), then the container removed."""
        if target.handle is None:
            return
        try:
            self.end_execs(target.handle.container.id or target.name)
            self.remove_container(target.handle.container.id or target.name)
        except NotFound:
            pass
        except DockerException as exc:
            raise BackendError(f"{self.title} could not remove container {target.name}: {exc}") from exc
        finally:
            if target.facts.get("container_id"):
                self.runtime.after_destroy(target)

    def end_execs(self, container_id: str) -> list[int]:
        """Kill the processes of the container's exec sessions that still run (an interrupted
        guest view's), and wait until the engine has seen each end: the PIDs killed."""
        running = {}
        for exec_id in self.client.api.inspect_container(container_id).get("ExecIDs") or []:
            session = self._exec_session(exec_id)
            if session.get("Running") and session.get("Pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(session["Pid"], signal.SIGKILL)
                running[exec_id] = session["Pid"]
        killed, deadline = list(running.values()), time.monotonic() + EXEC_END_S
        while running and time.monotonic() < deadline:
            time.sleep(0.02)
            running = {e: pid for e, pid in running.items() if self._exec_session(e).get("Running")}
        return killed

    def _exec_session(self, exec_id: str) -> dict[str, Any]:
        try:
            return self.client.api.exec_inspect(exec_id)
        except NotFound:
            return {}

    def remove_container(self, container_id: str) -> None:
        """Force-remove one container and its anonymous volumes (the engine's API errors raised)."""
        self.client.api.remove_container(container_id, force=True, v=True)

    def clean(self, run_id: str | None = None) -> list[str]:
        """One run's containers; or, without a run id, every leftover: a container whose owner
        (an explorer process in another terminal, a test) still runs is not a leftover."""
        label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_MANAGED
        removed = []
        # The low-level listing: containers.list() inspects each one, which fails on a
        # container removed meanwhile (by its own run finishing).
        try:
            entries = self.client.api.containers(all=True, filters={"label": label})
        except DockerException as exc:
            raise BackendUnavailable(f"{self.title} could not list containers: {exc}", hint=self.start_hint) from exc
        for entry in entries:
            if not run_id and owner_alive((entry.get("Labels") or {}).get(LABEL_OWNER)):
                continue
            try:
                self.remove_container(entry["Id"])
            except NotFound:
                continue
            except APIError as exc:
                if exc.status_code == 409:  # its removal is already in progress
                    continue
                raise BackendError(f"{self.title} could not remove {entry['Names'][0]}: {exc.explanation}") from exc
            removed.append(f"container {entry['Names'][0].lstrip('/')}")
        known = {c["Id"] for c in self.client.api.containers(all=True)}
        return removed + self.runtime.clean(known)


class Runc:
    """Docker's default runtime: the workload's processes are host processes in the
    container's PID namespace, children of containerd's shim."""

    name: str | None = None
    milestones = ("created", "started", "process", "ready")
    # the workload's process is seen by polling, which may first see it after readiness: it is
    # only ordered after the start
    order = (("created", "started", "ready"), ("started", "process"))

    def check(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"storage": overlay_storage(info)}  # where the container's files live (the I/O table)

    def doctor_checks(self, engine: DockerEngine) -> list[DoctorCheck]:
        return [DoctorCheck("Docker engine", engine.describe)]

    def poll(self, target: Target[RunningContainer]) -> None:
        """Mark 'process' once a workload-named process runs in the container's tree."""
        if "process" in target.marks:
            return
        try:
            init = psutil.Process(target.held.init_pid)
            names = {p.name() for p in (init, *init.children(recursive=True))}
        except psutil.Error:
            return
        if names & set(target.held.process_names):
            target.mark("process")
            target.facts["process_named"] = True  # the name is confirmed, for the probes

    def host_pids(self, target: Target[RunningContainer]) -> list[int]:
        """Every host process in the container's PID namespace, docker exec'd ones included."""
        try:
            wanted = os.readlink(f"/proc/{target.held.init_pid}/ns/pid")
        except OSError:
            return []
        pids = []
        for proc in psutil.process_iter():
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/pid") == wanted:
                    pids.append(proc.pid)
            except OSError:
                continue
        return sorted(pids)

    def runtime_pids(self, target: Target[RunningContainer]) -> dict[int, str]:
        return shim_of(target)

    def netns_path(self, target: Target[RunningContainer], port: int, engine: DockerEngine) -> NetPath:
        pid = target.held.init_pid
        return own_netns_path(
            pid,
            port,
            f"the workload's (PID {pid})",
            "the container's own loopback, its namespaces, cgroups and seccomp filter, without docker-proxy",
        )

    def after_destroy(self, target: Target[RunningContainer]) -> None:
        return None

    def clean(self, known: set[str]) -> list[str]:
        return []


def shim_of(target: Target[RunningContainer]) -> dict[int, str]:
    """containerd's shim of the container: the parent of its init process."""
    try:
        shim = psutil.Process(target.held.init_pid).parent()
    except psutil.Error:
        return {}
    return {shim.pid: "shim"} if shim is not None else {}


def own_netns_path(pid: int | None, port: int, whose: str, how: str) -> NetPath:
    """The client started in the network namespace of `pid` (nsenter --net=/proc/PID/ns/net),
    against 127.0.0.1:port there. Not measured, with the reason, where nsenter is missing or
    the namespace is gone (its process exited)."""
    ns = f"/proc/{pid}/ns/net"
    prefix = ("nsenter", f"--net={ns}")
    missing = netns_missing(pid)
    identity = ""
    if missing is None:
        try:
            ours, theirs = os.readlink("/proc/self/ns/net"), os.readlink(ns)
        except OSError as exc:
            missing = f"the container's network namespace cannot be read ({ns}: {exc.strerror})"
        else:
            whose_ns = "the host's own" if theirs == ours else "not the host's"
            identity = f" {theirs}, {whose_ns};"
    description = (
        f"the client in {whose} network namespace ({' '.join(prefix)};{identity} 127.0.0.1:{port} there): {how}"
    )
    return NetPath(OWN_NETNS, description, port, prefix, missing=missing)


def netns_missing(pid: int | None) -> str | None:
    """Why a client cannot join the network namespace of `pid` (None: it can)."""
    if shutil.which("nsenter") is None:
        return "nsenter is not installed (apt-get install util-linux)"
    if not pid or not os.path.isdir(f"/proc/{pid}"):
        return f"the container's network namespace is gone: its process {pid} has exited"
    try:
        os.stat(f"/proc/{pid}/ns/net")
    except OSError as exc:
        return f"the container's network namespace cannot be opened (/proc/{pid}/ns/net: {exc.strerror})"
    return None
