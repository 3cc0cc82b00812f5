"""gVisor's runsc as Docker's OCI runtime: the same image on gVisor's own kernel.

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
from typing import TYPE_CHECKING, Any

import psutil

from explorer.contracts import DoctorCheck
from explorer.engines.docker import OWN_NETNS, own_netns_path, shim_of
from explorer.engines.storage import gvisor_storage
from explorer.errors import BackendError, BackendUnavailable
from explorer.guest.handles import RunningContainer
from explorer.model import NetPath, Target

if TYPE_CHECKING:
    from explorer.engines.docker import DockerEngine

RUNSC_HINT = "run scripts/setup-host (it installs Debian's runsc and registers it with dockerd)"
# argv[0] of runsc's host processes (their comm is `exe`, so `ps -e` lists them as exe)
ROLE_BY_ARGV0 = {"runsc-sandbox": "sandbox", "runsc-gofer": "gofer"}
REAP_WAIT_S = 5.0


class Runsc:
    name = "runsc"
    milestones = ("created", "started", "ready")  # no workload process on the host to mark
    order = (milestones,)

    def check(self, info: dict[str, Any]) -> dict[str, Any]:
        runtime = (info.get("Runtimes") or {}).get(self.name)
        if runtime is None:
            raise BackendUnavailable("dockerd has no runsc runtime registered", hint=RUNSC_HINT)
        args = runtime.get("runtimeArgs") or []
        platform = next((a.split("=", 1)[1] for a in args if a.startswith("--platform=")), "ptrace (default)")
        version = _runsc_version(runtime.get("path") or "runsc")
        return {
            "runsc_path": runtime.get("path"),
            "runsc_args": args,
            "runsc_platform": platform,
            "runsc_version": version,
            "runtime_summary": f"runsc {version}, {platform} platform",
            # where the container's files live (the I/O table): its overlay setting, else runsc's default
            "storage": gvisor_storage(args, _runsc_flags(runtime.get("path") or "runsc")),
        }

    def doctor_checks(self, engine: DockerEngine) -> list[DoctorCheck]:
        def gvisor() -> str:
            facts = engine.check()
            return (
                f"runsc {facts['runsc_version']} at {facts['runsc_path']}, {facts['runsc_platform']} platform, "
                f"args {' '.join(facts['runsc_args']) or 'none'}"
            )

        return [DoctorCheck("Docker engine", engine.describe), DoctorCheck("gVisor (runsc under Docker)", gvisor)]

    def poll(self, target: Target[RunningContainer]) -> None:
        return None  # nothing to mark: the engine raises once the container has exited

    def host_pids(self, target: Target[RunningContainer]) -> list[int]:
        return []  # the workload runs on the Sentry: it has no host PID of its own

    def runtime_pids(self, target: Target[RunningContainer]) -> dict[int, str]:
        """The shim, and below it runsc's sandbox and gofer (found by command line, since their
        name is `exe`), and the sandbox's stub processes."""
        found = shim_of(target)
        for shim in list(found):
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(shim).children(recursive=True):
                    found[proc.pid] = _role(proc)
        return found

    def netns_path(self, target: Target[RunningContainer], port: int, engine: DockerEngine) -> NetPath:
        """With --network=host the Sentry serves the workload's sockets with host sockets,
        opened in runsc-sandbox's network namespace (the one Docker made for the container): a
        client in that namespace reaches the workload on its 127.0.0.1. With gVisor's own network
        stack (netstack, the default) the workload's loopback lives inside the Sentry, and no
        host namespace holds it."""
        args = engine.check().get("runsc_args") or []
        network = next((a.split("=", 1)[1] for a in args if a.startswith("--network=")), "sandbox (default)")
        if network != "host":
            why = (
                f"runsc runs with --network={network}: the workload's loopback is gVisor's own network stack "
                "(netstack) inside the Sentry, which no host network namespace holds"
            )
            return NetPath(OWN_NETNS, "the client in the sandbox's network namespace", port, missing=why)
        sandbox = next((pid for pid, role in self.runtime_pids(target).items() if role == "sandbox"), None)
        return own_netns_path(
            sandbox,
            port,
            f"runsc-sandbox's (PID {sandbox})",
            "runsc's --network=host: the Sentry opens the workload's sockets as host sockets in this namespace, so "
            "the client reaches the workload through the host kernel's loopback and the Sentry, without docker-proxy",
        )

    def after_destroy(self, target: Target[RunningContainer]) -> None:
        """No runsc process outlives its container (a failed start has been seen to leave
        runsc-sandbox behind)."""
        _reap(target.held.container.id or target.name)

    def clean(self, known: set[str]) -> list[str]:
        """runsc processes whose container is gone: orphans of a failed start."""
        removed = []
        for proc in _runsc_processes():
            owner = _container_of(proc)
            if owner and owner not in known:
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
    while left := [p for p in _runsc_processes() if _container_of(p) == container_id]:
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


def _runsc_flags(path: str) -> str | None:
    """What `runsc flags` prints (on stderr), its flags and their defaults; None if it cannot run."""
    try:
        done = subprocess.run([path, "flags"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout + done.stderr) if done.returncode == 0 else None
