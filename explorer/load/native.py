"""The native reference: the same server binary from the same root filesystem, run on the host
as a plain process, loaded the same way: the floor against which every side's cost is a ratio.
It is a reference row, not a side: no claim is judged for it.

No PID, user, IPC or UTS namespace, no cgroup of its own, no seccomp filter, no runtime: the
image's root filesystem (a copy, so that the run writes nothing into the cache) is its root
(chroot), with /proc, a small /dev and /dev/shm mounted as a container has them, and its
ENTRYPOINT + CMD run as its user with its environment, as Docker would. One thing is added: a
network namespace of explorer's own holding only loopback, so that a server that binds 0.0.0.0
is reachable from nowhere but explorer's readiness check and load client, which join it (`ip
netns exec`, which also gives each a mount namespace of its own: the reference's mounts live
and end there). Loopback inside it is the host kernel's loopback path, a native client's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from explorer import interrupts
from explorer.cache import cache_dir
from explorer.dockerd import docker_client
from explorer.errors import ExplorerError, NotReady
from explorer.images import partials
from explorer.images.rootfs.busybox import static_busybox
from explorer.images.rootfs.export import export_image, unpack_tar
from explorer.images.rootfs.guest_config import workload_exec
from explorer.load.rounds import Endpoint
from explorer.model import Artifact, NetPath, owner_alive
from explorer.scenario import Scenario
from explorer.tools import run_tool

BUSYBOX = ".explorer/busybox"
# In the mount namespace `ip netns exec` gives it (mounts end with it, nothing reaches the
# host's): what Docker gives a container's root too, /proc, a /dev of its own with the usual
# character devices, and /dev/shm (PostgreSQL's shared memory); then the chroot, the working
# directory and the workload. Arguments: BUSYBOX ($0) ROOT WORKDIR ARGV...
MOUNTS_AND_EXEC = """
set -e
b=$0 root=$1 dir=$2
shift 2
$b mkdir -p "$root/proc" "$root/dev"
$b mount -t proc proc "$root/proc"
$b mount -t tmpfs -o mode=0755,size=64k explorer-dev "$root/dev"
$b mknod -m 666 "$root/dev/null" c 1 3
$b mknod -m 666 "$root/dev/zero" c 1 5
$b mknod -m 666 "$root/dev/full" c 1 7
$b mknod -m 666 "$root/dev/random" c 1 8
$b mknod -m 666 "$root/dev/urandom" c 1 9
$b mknod -m 666 "$root/dev/tty" c 5 0
$b mkdir -m 1777 "$root/dev/shm"
$b mount -t tmpfs -o mode=1777 explorer-shm "$root/dev/shm"
exec $b chroot "$root" /.explorer/busybox sh -c 'cd "$1" && shift && exec "$@"' sh "$dir" "$@"
"""
NETNS_PREFIX = "explorer-native-"  # explorer-native-PID-xxxx
LOOPBACK_PATH = "loopback (ip netns exec)"
STOP_WAIT_S = 5.0


def unpacked_root(scenario: Scenario, artifact: Artifact, progress: Any = None) -> Path:
    """The image's root filesystem, unpacked once into the cache (keyed as the image is)."""
    key = (scenario.workload.recipe.content_hash() if scenario.workload.recipe else "") or str(
        artifact.image_id or artifact.ref
    ).replace(":", "-")
    final = cache_dir("native") / key
    if (final / ".complete").is_file():
        return final / "root"
    if progress:
        progress(f"unpacking {artifact.ref}'s root filesystem for the native reference")
    with partials.build_dir(cache_dir("tmp"), partials.NATIVE) as work:
        root = work / "root"
        root.mkdir()
        tar = artifact.paths.get("rootfs_tar")
        if tar and Path(tar).is_file():
            unpack_tar(root, Path(tar))
        else:
            export_image(docker_client(), artifact.ref, root)
        (work / ".complete").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(work, final)
        work.mkdir()  # build_dir removes it again
    return final / "root"


class NativeReference:
    """Start, reach, stop; everything removed however the run ends."""

    def __init__(self, scenario: Scenario, artifact: Artifact, root: Path) -> None:
        self.scenario, self.artifact, self.root = scenario, artifact, root
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.copy: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None

    def start(self) -> Endpoint:
        """The server running and ready; its endpoint (inside the network namespace)."""
        with interrupts.deferred():
            self.copy = partials.make_dir(cache_dir("tmp"), partials.NATIVE)
            run_tool(["ip", "netns", "add", self.netns], "making the native reference's network namespace")
        run_tool(["ip", "-n", self.netns, "link", "set", "lo", "up"], "bringing its loopback up")
        run_tool(["cp", "-a", "--reflink=auto", f"{self.root}/.", str(self.copy)], "copying the root filesystem")
        (self.copy / BUSYBOX).parent.mkdir(exist_ok=True)
        shutil.copy2(static_busybox(), self.copy / BUSYBOX)
        argv, workdir = workload_exec(self.copy, self.scenario, self.artifact, "explorer-native")
        self.log = self.copy.parent / f"{self.copy.name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *self.prefix,
                    str(self.copy / BUSYBOX),
                    "sh",
                    "-c",
                    MOUNTS_AND_EXEC,
                    str(self.copy / BUSYBOX),  # $0
                    str(self.copy),
                    workdir,
                    *argv,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.wait_ready()
        return Endpoint(
            "127.0.0.1",
            self.scenario.workload.port,
            self.pids,
            self.alive,
            self.logs,
            self.prefix,
            self.root,
            storage=host_storage(self.copy / workdir.lstrip("/")),
        )

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    @property
    def net_path(self) -> NetPath:
        port = self.scenario.workload.port
        return NetPath(
            LOOPBACK_PATH,
            f"the client in explorer's network namespace of the reference (ip netns exec {self.netns}), against "
            f"127.0.0.1:{port} there: the host kernel's loopback, no proxy",
            port,
            tuple(self.prefix),
        )

    def wait_ready(self) -> None:
        """Explorer's readiness check for the scenario, from inside the namespace; the server
        exiting meanwhile ends the wait at once (a workload that cannot start fails fast)."""
        ready = json.dumps(self.scenario.workload.ready.as_data())
        timeout = self.scenario.timeouts.ready_s
        argv = [*self.prefix, sys.executable, "-m", "explorer.readiness", ready, "127.0.0.1"]
        with interrupts.deferred():  # a checker started is a checker recorded, to be stopped
            checker = subprocess.Popen(
                [*argv, str(self.scenario.workload.port), str(timeout)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                cwd=Path(__file__).resolve().parents[2],
            )
        try:
            deadline = time.monotonic() + timeout + 30
            while checker.poll() is None:
                if time.monotonic() > deadline:
                    raise NotReady(f"the native reference's readiness check did not end in {timeout + 30:.0f} s")
                self.alive()  # raises when the server has exited
                time.sleep(0.05)
        finally:
            with interrupts.deferred():
                if checker.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(checker.pid, signal.SIGKILL)
                _, err = checker.communicate()
        if checker.returncode != 0:
            self.alive()
            raise NotReady(err.strip() or "the native reference did not answer", hint=self.logs())

    def pids(self) -> dict[int, str]:
        """The server's processes: every process of its session (postgres forks its own)."""
        if self.proc is None:
            return {}
        return {p.pid: "workload" for p in session_members(self.proc.pid)}

    def alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ExplorerError(f"the native reference exited with code {self.proc.returncode}", hint=self.logs())

    def logs(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").rstrip().splitlines()[-lines:]) if self.log else ""
        return ""

    def stop(self) -> None:
        """The server and every process of its session, the namespace, the copy: gone."""
        with interrupts.deferred():
            if self.proc is not None:
                stop_session(self.proc)
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False, timeout=30)
            if self.copy is not None:
                partials.remove(self.copy)
            if self.log is not None:
                self.log.unlink(missing_ok=True)


def host_storage(directory: Path) -> dict[str, Any]:
    """Where the reference's files live: its working directory in the copy of the root, on the
    host's own filesystem (the mount that holds it, read from the host's mount table)."""
    resolved = str(directory.resolve())
    mounts = [
        m
        for m in psutil.disk_partitions(all=True)
        if resolved == m.mountpoint or resolved.startswith(m.mountpoint.rstrip("/") + "/")
    ]
    mount = max(mounts, key=lambda m: len(m.mountpoint), default=None)
    fstype = mount.fstype if mount else "unknown"
    at = mount.mountpoint if mount else "unknown"
    return {
        "path": f"the host's filesystem ({fstype} at {at}), no layer between",
        "filesystem": fstype,
        "mount": at,
        "device": mount.device if mount else None,
        "directory": resolved,  # in the temporary copy of the image's root, removed when the reference stops
    }


def session_members(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == sid:
                found.append(proc)
    return found


def stop_session(proc: subprocess.Popen[bytes]) -> None:
    members = session_members(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(members, timeout=STOP_WAIT_S)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(alive, timeout=STOP_WAIT_S)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_WAIT_S)


def clean() -> list[str]:
    """The network namespaces of explorer processes that no longer run (the copies are
    partials: `explorer clean` removes those with the rest)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    removed = []
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NETNS_PREFIX) and not owner_alive(name.removeprefix(NETNS_PREFIX).split("-")[0]):
            for pid in subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout.split():
                with contextlib.suppress(psutil.Error):
                    psutil.Process(int(pid)).kill()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
            removed.append(f"network namespace {name}")
    return removed
