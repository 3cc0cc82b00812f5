"""The gVisor side: the same image, started by dockerd with the runsc runtime.

gVisor's Sentry is a kernel in user space: the workload's system calls go to it, not to the
host's kernel. With the ptrace platform (the one that works on this kind of machine) each of
the workload's address spaces is a stub child of runsc-sandbox, and the workload's code runs
in those stubs under the Sentry's control: the host sees processes that execute the
workload's code, but not its name, its PIDs or its system calls. So the host PIDs of the
workload are none; what the host does see is reported with its role (sandbox, gofer, stub).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Any

import psutil

from explorer.backends.base import Target
from explorer.backends.docker import DockerBackend
from explorer.errors import BackendError, BackendUnavailable

RUNSC_HINT = "run scripts/setup-host (it installs Debian's runsc and registers it with dockerd)"
# argv[0] of runsc's host processes (their comm is `exe`, so `ps -e` lists them as exe)
ROLE_BY_ARGV0 = {"runsc-sandbox": "sandbox", "runsc-gofer": "gofer"}
REAP_WAIT_S = 5.0


class GVisorBackend(DockerBackend):
    NAME = "docker"
    RUNTIME = "runsc"
    MILESTONES = ("created", "started", "ready")  # no workload process on the host to mark

    def check(self) -> dict[str, Any]:
        facts = super().check()
        runtime = (self.client.info().get("Runtimes") or {}).get(self.RUNTIME)
        if runtime is None:
            raise BackendUnavailable("dockerd has no runsc runtime registered", hint=RUNSC_HINT)
        args = runtime.get("runtimeArgs") or []
        platform = next((a.split("=", 1)[1] for a in args if a.startswith("--platform=")), "ptrace (default)")
        facts.update(runsc_path=runtime.get("path"), runsc_args=args, runsc_platform=platform,
                     runsc_version=_runsc_version(runtime.get("path") or "runsc"))
        return facts

    def poll(self, target: Target) -> None:
        """Raise (with the logs) as soon as the container has exited; nothing else to mark."""
        init_pid = target.facts.get("init_pid")
        if not init_pid or not psutil.pid_exists(init_pid):
            self._raise_if_exited(target)

    def host_pids(self, target: Target) -> list[int]:
        return []  # the workload runs on the Sentry: it has no host PID of its own

    def runtime_pids(self, target: Target) -> dict[int, str]:
        """The shim, and below it runsc's sandbox and gofer (found by command line, since their
        name is `exe`), and the sandbox's stub processes."""
        found = super().runtime_pids(target)
        for shim in list(found):
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(shim).children(recursive=True):
                    found[proc.pid] = _role(proc)
        return found

    def destroy(self, target: Target) -> None:
        """Remove the container, then make sure no runsc process of it outlives it (a failed
        start has been seen to leave runsc-sandbox behind)."""
        try:
            super().destroy(target)
        finally:
            if target.facts.get("container_id"):
                _reap(target.facts["container_id"])

    def clean(self, run_id: str | None = None) -> list[str]:
        removed = super().clean(run_id)
        known = {c["Id"] for c in self.client.api.containers(all=True)}
        for proc in _runsc_processes():
            owner = _container_of(proc)
            if owner and owner not in known:  # its container is gone: an orphan of a failed start
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                    removed.append(f"orphaned {_role(proc)} process {proc.pid} of container {owner[:12]}")
        return removed


def _role(proc: psutil.Process) -> str:
    try:
        argv0 = (proc.cmdline() or [""])[0]
    except psutil.Error:
        return "stub"
    return ROLE_BY_ARGV0.get(argv0, "stub")


def _runsc_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if (proc.cmdline() or [""])[0] in ROLE_BY_ARGV0:
                found.append(proc)
    return found


def _container_of(proc: psutil.Process) -> str | None:
    """The container id in a runsc process's command line (its --log path, its last word)."""
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return None
    ids = [part for word in argv for part in word.replace("=", "/").split("/") if len(part) == 64]
    return ids[-1] if ids else None


def _reap(container_id: str) -> None:
    """Wait for runsc's processes of `container_id` to end; kill the ones that do not."""
    deadline = time.monotonic() + REAP_WAIT_S
    while (left := [p for p in _runsc_processes() if _container_of(p) == container_id]):
        if time.monotonic() > deadline:
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(left, timeout=REAP_WAIT_S)
            return
        time.sleep(0.1)


def _runsc_version(path: str) -> str | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendError(f"runsc --version failed: {exc}", hint=RUNSC_HINT) from exc
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("runsc version ").strip() or None

