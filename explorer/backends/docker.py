"""The container side: the docker SDK drives the engine; psutil finds what it started."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import docker
import psutil
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from explorer import guest
from explorer.backends.base import (
    LABEL_IMAGE,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_RECIPE,
    LABEL_RUN,
    LABEL_SCENARIO,
    Artifact,
    Backend,
    GuestView,
    Target,
    owner_alive,
)
from explorer.errors import BackendError, BackendUnavailable
from explorer.images.docker_image import ensure_image
from explorer.scenario import Scenario

if TYPE_CHECKING:
    from explorer.sides import Side

START_HINT = "run scripts/setup-host (it installs and starts containerd and dockerd)"


class DockerBackend(Backend):
    """A container started by dockerd with one OCI runtime (runc unless RUNTIME says)."""

    NAME = "docker"
    RUNTIME: str | None = None  # None: the engine's default runtime
    MILESTONES = ("created", "started", "process", "ready")

    def __init__(self, side: Side | None = None) -> None:
        from explorer.sides import SIDES

        super().__init__(side or SIDES["runc"])
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=120)
                self._client.ping()
            except DockerException as exc:
                self._client = None
                raise BackendUnavailable(
                    f"unable to contact the Docker daemon: {exc}", hint=START_HINT
                ) from exc
        return self._client

    def check(self) -> dict[str, Any]:
        version = self.client.version()
        info = self.client.info()
        return {
            "engine": "docker",
            "engine_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "default_runtime": info.get("DefaultRuntime"),
            "runtime": self.RUNTIME or info.get("DefaultRuntime"),
        }

    def prepare(self, scenario: Scenario, progress: Any = None) -> Artifact:
        return ensure_image(self.client, scenario, progress)

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target:
        port = scenario.workload.port
        labels = {LABEL_MANAGED: "true", LABEL_RUN: run_id, LABEL_SCENARIO: scenario.name,
                  LABEL_OWNER: str(os.getpid())}  # `explorer clean` spares the containers of a live run
        if LABEL_RECIPE in artifact.facts.get("labels", {}):
            labels[LABEL_RECIPE] = artifact.facts["labels"][LABEL_RECIPE]
        target = Target(side=self.side.name, name=f"explorer-{scenario.name}-{self.side.name}-{run_id}-{index}",
                        run_id=run_id, host_port=0)
        target.facts["process_names"] = list(scenario.workload.processes)
        try:
            container = self.client.containers.create(
                artifact.ref,
                command=list(scenario.workload.command) or None,
                name=target.name,
                labels=labels,
                ports={f"{port}/tcp": ("127.0.0.1", None)},
                security_opt=["no-new-privileges"],
                runtime=self.RUNTIME,
                detach=True,
            )
            target.handle = container
            target.mark("created")
            container.start()
            target.mark("started")
            container.reload()
        except APIError as exc:
            raise BackendError(f"Docker could not start {target.name}: {exc.explanation or exc}") from exc
        target.facts["container_id"] = container.id
        target.facts["init_pid"] = container.attrs["State"]["Pid"]
        # A workload that exits at once may be gone before Docker reports its port: say that it
        # exited (code, logs), not that no port was published.
        self._raise_if_exited(target, reload=False)
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        if not bindings:
            self._raise_if_exited(target, wait_s=2.0)
            raise BackendError(f"Docker published no host port for {port}/tcp of {target.name}")
        target.host_port = int(bindings[0]["HostPort"])
        self.poll(target)
        return target

    def poll(self, target: Target) -> None:
        """Mark 'process' once a workload-named process runs in the container's tree;
        raise (with the logs) as soon as the container has exited."""
        init_pid = target.facts["init_pid"]
        if not init_pid or not psutil.pid_exists(init_pid):
            self._raise_if_exited(target)
            return
        if "process" in target.marks:
            return
        try:
            init = psutil.Process(init_pid)
            names = {p.name() for p in (init, *init.children(recursive=True))}
        except psutil.Error:
            return
        if names & set(target.facts["process_names"]):
            target.mark("process")
            target.facts["process_named"] = True  # the name is confirmed, for the probes

    def _raise_if_exited(self, target: Target, reload: bool = True, wait_s: float = 0.0) -> None:
        """Raise with the exit code and the last log lines if the container has stopped; with
        `wait_s`, wait that long for a stop Docker has not recorded yet (its PID is gone)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if reload:
                    target.handle.reload()
            except NotFound:
                raise BackendError(f"the container {target.name} was removed while it ran (docker rm, or a "
                                   "`explorer clean` of an older explorer)") from None
            except DockerException as exc:
                raise BackendError(f"Docker could not inspect {target.name}: {exc}") from exc
            state = target.handle.attrs["State"]
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

    def host_pids(self, target: Target) -> list[int]:
        """Every host process in the container's PID namespace, docker exec'd ones included."""
        try:
            wanted = os.readlink(f"/proc/{target.facts['init_pid']}/ns/pid")
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

    def runtime_pids(self, target: Target) -> dict[int, str]:
        try:
            shim = psutil.Process(target.facts["init_pid"]).parent()
        except psutil.Error:
            return {}
        return {shim.pid: "shim"} if shim is not None else {}

    def guest_view(self, target: Target) -> GuestView:
        try:
            result = target.handle.exec_run(["/bin/sh", "-c", guest.view_script()], demux=False)
        except APIError as exc:
            raise BackendError(f"docker exec into {target.name} failed: {exc.explanation}") from exc
        text = result.output.decode(errors="replace")
        view = guest.parse_view(text, channel="docker exec /bin/sh")
        if result.exit_code != 0 or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {text.strip()[-300:]}")
        return view

    def logs(self, target: Target, lines: int = 20) -> str:
        if target.handle is None:
            return ""
        try:
            return target.handle.logs(tail=lines).decode(errors="replace").rstrip()
        except DockerException:
            return ""

    def destroy(self, target: Target) -> None:
        if target.handle is None:
            return
        try:
            target.handle.remove(force=True, v=True)
        except NotFound:
            pass
        except DockerException as exc:
            raise BackendError(f"could not remove container {target.name}: {exc}") from exc

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
            raise BackendUnavailable(f"Docker could not list containers: {exc}", hint=START_HINT) from exc
        for entry in entries:
            if not run_id and owner_alive((entry.get("Labels") or {}).get(LABEL_OWNER)):
                continue
            try:
                self.client.api.remove_container(entry["Id"], force=True, v=True)
            except NotFound:
                continue
            except APIError as exc:
                if exc.status_code == 409:  # its removal is already in progress
                    continue
                raise BackendError(f"Docker could not remove {entry['Names'][0]}: {exc.explanation}") from exc
            removed.append(f"container {entry['Names'][0].lstrip('/')}")
        return removed

    def remove_images(self) -> list[str]:
        removed = []
        for image in self.client.images.list(filters={"label": LABEL_IMAGE}):
            try:
                self.client.images.remove(image.id, force=True)
                removed.append(f"image {', '.join(image.tags) or image.short_id}")
            except (ImageNotFound, APIError):
                continue
        return removed
