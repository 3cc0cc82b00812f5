"""Podman as an engine: rootful Podman starts each container in a user namespace of its own
(`--userns=auto`), driven through Podman's Docker-compatible API with the docker SDK.

It is Docker's engine (engines/docker.py) with another daemon behind the socket; what differs
is said here:

- the client talks to `podman system service` on PODMAN_URL, which scripts/setup-host starts
  as `podman --runtime runc system service` (no systemd here to socket-activate it). The
  runtime is the service's: Podman 4.3's API ignores a container's own OCI runtime (podman
  issue 28429), and its default crun refuses this kind of host's hybrid cgroups;
- the container is created with UsernsMode "auto" (the compat API honours it; docker-py's
  HostConfig refuses the word, so the low-level create takes a host config completed by hand)
  and explicit ulimits within the host's hard limits (Podman's defaults ask for more);
- the image is Docker's own, `docker save` into Podman's load, once per image ID (the same
  content hash in both stores);
- conmon, not containerd's shim, is the workload's parent; the published port is the kernel's
  NAT (CNI's portmap plugin), no userland proxy relays it;
- its network plumbing on the host (namespace, veth, address, rules) is Podman's to remove, and
  Podman 4.3 leaks it where /run/netns is not a shared mount point: engines/podman_net.py makes
  it one before each container, records what each container got, and removes what a container
  left when it is gone;
- an exec's conmon outlives the exec by Podman's exit_command_delay (5 minutes): destroy ends
  the container's exec monitors before it removes the container, and waits for its conmon.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import Ulimit

from explorer.contracts import DoctorCheck, Progress
from explorer.dockerd import docker_client
from explorer.engines import podman_net
from explorer.engines.conmon import conmons, kill_conmons, wait_for_conmons
from explorer.engines.docker import DockerEngine, Runc, own_netns_path, shim_of
from explorer.errors import BackendError, BackendUnavailable, ExplorerError
from explorer.guest.handles import RunningContainer
from explorer.images.container.source import tool
from explorer.model import LABEL_IMAGE, Artifact, NetPath, Side, Target
from explorer.scenario import Scenario

PODMAN_URL = os.environ.get("EXPLORER_PODMAN_URL", "unix:///run/podman/podman.sock")
START_HINT = (
    "run scripts/setup-host (it installs podman, uidmap and crun, adds the subordinate ID range "
    "and starts `podman --runtime runc system service` on /run/podman/podman.sock)"
)
RUNTIME = "runc"  # crun 1.8 refuses this kind of host's hybrid cgroups
SUBID_USER = "containers"  # --userns=auto allocates from this user's /etc/subuid, /etc/subgid ranges
NPROC = 4096  # Podman refused nproc at the host's hard limit; 4096 worked (MACHINE_NOTES)
NOFILE_MAX = 1048576  # Docker's own default, where the host allows it
PUBLISHED = "published port (CNI portmap)"
REMOVE_TRIES, REMOVE_RETRY_S = 5, 0.2


@functools.cache
def _connected(url: str) -> docker.DockerClient:
    client = docker.DockerClient(base_url=url, timeout=120)
    client.ping()
    return client


def podman_client() -> docker.DockerClient:
    """The docker SDK's client of Podman's compatible API; BackendUnavailable if none answers."""
    try:
        return _connected(PODMAN_URL)
    except DockerException as exc:
        raise BackendUnavailable(
            f"unable to contact Podman's API service at {PODMAN_URL}: {exc}", hint=START_HINT
        ) from exc


def ulimits() -> list[Ulimit]:
    """nofile at the host's hard limit (capped at Docker's default), nproc at 4096: Podman's own
    defaults ask for more than this host allows ("setrlimit RLIMIT_NOFILE: Operation not permitted")."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = NOFILE_MAX if hard == resource.RLIM_INFINITY else min(hard, NOFILE_MAX)
    return [Ulimit(name="nofile", soft=nofile, hard=nofile), Ulimit(name="nproc", soft=NPROC, hard=NPROC)]


def subid_range(path: str, user: str = SUBID_USER) -> tuple[int, int] | None:
    """(first, count) of `user`'s subordinate range in /etc/subuid or /etc/subgid; None if none."""
    try:
        with open(path) as handle:
            for line in handle:
                name, _, rest = line.strip().partition(":")
                first, _, count = rest.partition(":")
                if name == user and first.isdigit() and count.isdigit():
                    return int(first), int(count)
    except OSError:
        return None
    return None


class Conmon(Runc):
    """runc under Podman: the same host processes as Docker's runc, their parent conmon."""

    name: str | None = None  # the service's runtime: the API cannot choose one per container

    def doctor_checks(self, engine: DockerEngine) -> list[DoctorCheck]:
        return [
            DoctorCheck("podman, uidmap, crun", _tools),
            DoctorCheck("Podman API service", engine.describe),
            DoctorCheck("subordinate ID ranges", _subids),
            DoctorCheck("Podman network namespaces", lambda: _stray_namespaces(engine), optional=True),
        ]

    def runtime_pids(self, target: Target[RunningContainer]) -> dict[int, str]:
        return {pid: "conmon" for pid in shim_of(target)}

    def netns_path(self, target: Target[RunningContainer], port: int, engine: DockerEngine) -> NetPath:
        pid = target.held.init_pid
        return own_netns_path(
            pid,
            port,
            f"the workload's (PID {pid})",
            "the container's own loopback, its namespaces (a user namespace among them), cgroups and seccomp "
            "filter, without the port's NAT",
        )


def _tools() -> str:
    """Podman, the newuidmap/newgidmap it maps IDs with, and crun (Debian's podman depends on it;
    runc, which runs the containers here, comes with Docker's engine)."""
    return ", ".join(
        tool(name, package)
        for name, package in (("podman", "podman"), ("newuidmap", "uidmap"), ("crun", "crun"), ("runc", "runc"))
    )


def _subids() -> str:
    ranges = {path: subid_range(path) for path in ("/etc/subuid", "/etc/subgid")}
    missing = [path for path, found in ranges.items() if found is None]
    if missing:
        raise ExplorerError(f"no range for {SUBID_USER!r} in {', '.join(missing)}", hint=START_HINT)
    first, count = ranges["/etc/subuid"] or (0, 0)
    return f"{SUBID_USER}: UIDs {first}-{first + count - 1} ({count}), GIDs likewise, for --userns=auto"


class PodmanEngine(DockerEngine):
    """A container started by Podman's API service in a user namespace of its own."""

    name = "podman"
    daemons = ("podman",)  # the API service; conmon is each container's own (a runtime role)
    title = f"Podman ({RUNTIME})"  # what its errors name: Podman refuses, not Docker
    cli = "podman"
    start_hint = START_HINT

    def __init__(self, side: Side) -> None:
        super().__init__(side, Conmon())

    @property
    def client(self) -> Any:
        return podman_client()

    def check(self) -> dict[str, Any]:
        client = self.client
        try:
            version, info = client.version(), client.info()
        except DockerException as exc:
            raise BackendUnavailable(f"Podman's API service did not answer: {exc}", hint=START_HINT) from exc
        runtime = info.get("DefaultRuntime")
        if runtime != RUNTIME:
            raise BackendUnavailable(
                f"Podman's API service runs containers with {runtime}, not {RUNTIME} (crun refuses hybrid cgroups, "
                "and the API cannot choose a runtime per container)",
                hint="restart it as `podman --runtime runc system service --time=0 unix:///run/podman/podman.sock` "
                "(scripts/setup-host)",
            )
        if subid_range("/etc/subuid") is None or subid_range("/etc/subgid") is None:
            raise BackendUnavailable(
                f"--userns=auto has no range: no {SUBID_USER!r} in /etc/subuid or /etc/subgid", hint=START_HINT
            )
        facts = {
            "engine": "podman",
            "engine_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "default_runtime": runtime,
            "runtime": runtime,
            "userns": "auto",
            **self.runtime.check(info),
        }
        facts["summary"] = f"Podman {facts['engine_version']} ({runtime}, --userns=auto)"
        return facts

    def describe(self) -> str:
        facts = self.check()
        return (
            f"Podman {facts['engine_version']} at {PODMAN_URL} (runtime {facts['runtime']}, {facts['storage_driver']})"
        )

    def adopt(self, scenario: Scenario, artifact: Artifact, progress: Progress | None) -> None:
        """Docker's image into Podman's store, unless Podman has that image ID already."""
        image_id = artifact.image_id
        if image_id is None:
            raise BackendError(f"{artifact.ref} has no image ID to load into Podman")
        try:
            self.client.images.get(image_id)
            return
        except ImageNotFound:
            pass
        except DockerException as exc:
            raise BackendError(f"Podman could not inspect {image_id[:19]}: {exc}") from exc
        if progress:
            progress(f"loading {artifact.ref} into Podman (docker save | podman load)")
        try:
            self.client.images.load(docker_client().images.get(artifact.ref).save())
            self.client.images.get(image_id)
        except DockerException as exc:
            raise BackendError(f"could not load {artifact.ref} into Podman: {exc}") from exc

    def new_container(
        self, scenario: Scenario, artifact: Artifact, target: Target[RunningContainer], labels: dict[str, str]
    ) -> Container:
        port = scenario.workload.port
        host_config = self.client.api.create_host_config(
            port_bindings={f"{port}/tcp": ("127.0.0.1", None)},
            security_opt=["no-new-privileges"],
            ulimits=ulimits(),
        )
        host_config["UsernsMode"] = "auto"  # docker-py validates "host" only
        target.facts["userns_mode"] = "auto"
        podman_net.share_netns_dir()  # else Podman 4.3's cleanup never sees the namespace (podman_net)
        created = self.client.api.create_container(
            artifact.image_id or artifact.ref,
            command=list(scenario.workload.command) or None,
            name=target.name,
            labels=labels,
            ports=[port],
            host_config=host_config,
            detach=True,
        )
        return self.client.containers.get(created["Id"])

    def started(self, target: Target[RunningContainer]) -> None:
        """Its network namespace and addresses written down with its run's id and this PID, for
        `clean` to find should the container go without Podman removing them."""
        netns = target.held.container.attrs.get("NetworkSettings", {}).get("SandboxKey") or ""
        if netns and target.held.init_pid:
            podman_net.record(target.held.container.id or "", target.name, target.run_id, netns, target.held.init_pid)

    def destroy(self, target: Target[RunningContainer]) -> None:
        """Docker's, then the container's conmons waited for (each runs `podman container
        cleanup` once the container died) and what Podman left of its network removed."""
        try:
            super().destroy(target)
        finally:
            container_id = target.facts.get("container_id")
            if container_id:
                wait_for_conmons(container_id)
                podman_net.release(container_id)

    def end_execs(self, container_id: str) -> list[int]:
        """Docker's (the processes of running exec sessions killed), and every exec conmon of the
        container killed: Podman keeps each for its exit_command_delay after the exec ended."""
        killed = super().end_execs(container_id)
        return killed + kill_conmons(container_id, execs_only=True)

    def clean(self, run_id: str | None = None) -> list[str]:
        """Docker's (explorer's containers), then what gone containers left: their conmons, their
        network namespaces, veths, addresses and rules (podman_net.clean)."""
        removed = super().clean(run_id)
        known = {c["Id"] for c in self.client.api.containers(all=True)}
        for pid, name in conmons().items():
            if name[0] not in known and (not run_id or f"-{run_id}-" in name[1]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                removed.append(f"conmon {pid} (of {name[1]}, gone)")
        gone, _kept = podman_net.clean(known, run_id)
        return removed + gone

    def remove_container(self, container_id: str) -> None:
        """Docker's removal (destroy's and clean's), tried again while Podman says the container's
        shm is busy: with two removals at once (another run's, `explorer clean`'s), or a killed
        run's container whose conmon just went, Podman 4.3 failed one with "unlinkat
        .../userdata/shm: device or resource busy"; a second try removes it."""
        for attempt in range(REMOVE_TRIES):
            try:
                super().remove_container(container_id)
                return
            except NotFound:
                if attempt:  # the busy attempt removed it after all
                    return
                raise
            except APIError as exc:
                if "resource busy" not in str(exc) or attempt == REMOVE_TRIES - 1:
                    raise
                time.sleep(REMOVE_RETRY_S)

    def path_pids(self, target: Target[RunningContainer]) -> dict[int, str]:
        return {}  # the published port is NAT in the kernel: no process relays it

    def load_paths(self, target: Target[RunningContainer]) -> list[NetPath]:
        port = target.held.workload_port
        published = NetPath(
            PUBLISHED,
            f"Podman's port published on the host's 127.0.0.1:{target.host_port}: CNI's portmap plugin forwards it "
            f"to the container's port {port} by NAT in the kernel (no userland proxy)",
            target.host_port,
        )
        return [published, self.runtime.netns_path(target, port, self)]

    def remove_cached(self) -> list[str]:
        """Every image explorer loaded into Podman (their label says so)."""
        removed = []
        for image in self.client.images.list(filters={"label": LABEL_IMAGE}):
            try:
                self.client.images.remove(image.id, force=True)
                removed.append(f"Podman image {', '.join(image.tags) or image.short_id}")
            except (ImageNotFound, APIError):
                continue
        return removed


def _stray_namespaces(engine: DockerEngine) -> str:
    """Podman's network namespaces that no process holds and no container claims (a Podman that
    failed to tear one down left it, with its veth and its address)."""
    client = engine.client
    claimed = set()
    for entry in client.api.containers(all=True):
        with contextlib.suppress(DockerException):
            claimed.add(client.api.inspect_container(entry["Id"]).get("NetworkSettings", {}).get("SandboxKey") or "")
    stray = podman_net.strays(claimed)
    shared = podman_net.netns_dir_propagation(Path("/proc/self/mountinfo").read_text()) or "no mount point"
    if stray:
        raise ExplorerError(
            f"{len(stray)} left behind, with no process and no container: {', '.join(stray[:5])}",
            hint="`explorer clean` removes those of explorer's containers (namespace, veth, CNI address and rules); "
            "others: `ip netns del NAME` and their address in /var/lib/cni/networks/",
        )
    return f"none left behind ({podman_net.NETNS_DIR}: {shared})"
