"""systemd-nspawn as an engine: a system container booting the full-OS image's root
filesystem (images/systemroot.py) with its own systemd as PID 1, on the host's kernel.

Each instance gets, all named `explorer-nspawn-RUN-INDEX-PID` (the owner's PID: `clean`
spares a live run's):
- a work dir in the system temp dir, holding the overlayfs upper and work dirs, the merged
  mount point, the console log and the notify socket;
- an overlayfs (the cached root as its read-only lower layer), mounted inside a private mount
  namespace (`unshare --mount`) that only nspawn and the container live in: the mount ends
  with them, and is never in the host's mount table;
- a cgroup of its own in every cgroup hierarchy nspawn uses (name=systemd and the unified
  one here), which nspawn and the socket proxy join before they exec: without one, nspawn
  (with --keep-unit and no systemd on the host) puts its payload in the root's /payload, which
  two instances would share; and the handle that kills whatever is left;
- a network namespace explorer creates (`ip netns add`) holding only loopback, handed to
  nspawn (--network-namespace-path); clients join it with `ip netns exec`;
- systemd's own socket proxy, listening on the host's 127.0.0.1 (systemd-socket-activate) and
  connecting to 127.0.0.1 inside that namespace (systemd-socket-proxyd, started under `ip
  netns exec`): the published-port path, as Docker's docker-proxy is Docker's.
Never a veth, a bridge or any address but loopback.

Without systemd as the host's PID 1 nspawn needs `--register=no --keep-unit`. Milestones:
created (nspawn started), init (nspawn's notify message naming the container's PID 1),
unit (a process in the workload unit's cgroup: the unit is active), ready (the scenario's
check, not tried before `unit`), booted (the container's systemd said READY=1: the default
target, multi-user, reached; awaited after readiness).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from explorer.contracts import DoctorCheck, EngineDefaults
from explorer.errors import BackendError, BackendUnavailable
from explorer.guest.handles import NspawnMachine
from explorer.model import Artifact, NetPath, Side, Target, free_port, owner_alive
from explorer.scenario import Scenario

PREFIX = "explorer-nspawn-"  # explorer-nspawn-RUN-INDEX-PID (work dir: + -xxxxxxxx)
PROXYD = "/lib/systemd/systemd-socket-proxyd"
PUBLISHED = "published port (systemd-socket-proxyd)"
OWN_NETNS = "own netns (ip netns exec)"
STOP_WAIT_S = 15.0
BOOTED_WAIT_S = 60.0
HINT = "apt-get install systemd-container (scripts/setup-host installs it)"
# nspawn's start, in a private mount namespace: join the instance's cgroups, mount the
# overlay, exec the command. Arguments: LOWER UPPER WORK MERGED CGROUP_PROCS_FILES ARGV...
# (the cgroup files space-separated: explorer's own paths, checked to hold no whitespace)
OVERLAY_EXEC = """
set -e
lower=$1 upper=$2 work=$3 merged=$4 cgroups=$5
shift 5
for procs in $cgroups; do echo $$ > "$procs"; done
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
exec "$@"
"""
# The proxy's start: join the instance's cgroups, exec. Arguments: CGROUP_PROCS_FILES ARGV...
CGROUP_EXEC = """
set -e
cgroups=$1
shift
for procs in $cgroups; do echo $$ > "$procs"; done
exec "$@"
"""


def machine_name(run_id: str, index: int, pid: int | None = None) -> str:
    return f"{PREFIX}{run_id}-{index}-{os.getpid() if pid is None else pid}"


def owner_of(name: str) -> str:
    """The owner PID in a name PREFIX-RUN-INDEX-PID[-suffix] ('' if it has none)."""
    parts = name.removeprefix(PREFIX).split("-")
    return parts[2] if len(parts) >= 3 else ""


def run_of(name: str) -> str:
    return name.removeprefix(PREFIX).split("-")[0]


def cgroup_parents(self_cgroup: str, mounts: str) -> list[Path]:
    """Where an instance's cgroups go: under this process's own cgroup, in the named systemd
    hierarchy (cgroup v1 or hybrid) and in the unified one (cgroup2), where each is mounted.
    `self_cgroup`: /proc/self/cgroup; `mounts`: /proc/self/mounts."""
    points: dict[str, str] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup2":
            points.setdefault("unified", fields[1])
        elif len(fields) >= 4 and fields[2] == "cgroup" and "name=systemd" in fields[3].split(","):
            points.setdefault("systemd", fields[1])
    out = []
    for line in self_cgroup.splitlines():
        number, controllers, path = line.split(":", 2)
        which = "unified" if number == "0" and not controllers else "systemd" if controllers == "name=systemd" else None
        if which and which in points:
            out.append(Path(points[which]) / path.lstrip("/"))
    return out


def nspawn_argv(machine: NspawnMachine) -> list[str]:
    """systemd-nspawn booting the merged root: no registration (no machined, no host
    systemd), its own netns (explorer's), the console to the log, the journal kept inside."""
    return [
        "systemd-nspawn",
        "--quiet",
        f"--directory={machine.merged}",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={machine.name}",
        f"--network-namespace-path=/run/netns/{machine.netns}",
        "--notify-ready=yes",
        "--console=read-only",
        "--link-journal=no",
    ]


def start_argv(machine: NspawnMachine, lower: Path) -> list[str]:
    work = machine.workdir / "work"
    values = [str(p) for p in (lower, machine.upper, work, machine.merged)]
    for value in values:
        if any(c in value for c in ",:\n") or not value.startswith("/"):
            raise BackendError(f"cannot use {value!r} in an overlayfs mount (a comma, colon or relative path)")
    procs = _procs_files(machine.cgroups)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", OVERLAY_EXEC, "sh", *values, procs]


def proxy_argv(machine: NspawnMachine, host_port: int, port: int) -> list[str]:
    return [
        "sh",
        "-c",
        CGROUP_EXEC,
        "sh",
        _procs_files([cg / "proxy" for cg in machine.cgroups]),
        "systemd-socket-activate",
        "--listen",
        f"127.0.0.1:{host_port}",
        "ip",
        "netns",
        "exec",
        str(machine.netns),
        PROXYD,
        f"127.0.0.1:{port}",
    ]


def _procs_files(cgroups: list[Path]) -> str:
    files = [str(cg / "cgroup.procs") for cg in cgroups]
    if any(any(c.isspace() for c in f) for f in files):
        raise BackendError(f"a cgroup path holds whitespace: {files}")
    return " ".join(files)


def knock(port: int) -> bool:
    """One connection to the host's 127.0.0.1:`port`, closed at once; whether it was accepted.
    systemd-socket-activate starts the proxy (`ip netns exec` and systemd-socket-proxyd: 25-40 ms
    here) on the first connection it sees: knocked while the container boots, the proxy is
    running by the first readiness attempt, as docker-proxy runs from its container's start."""
    with socket.socket() as sock:
        sock.settimeout(0.05)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def parse_notify(message: bytes) -> dict[str, str]:
    """An sd_notify datagram: NAME=value lines."""
    out = {}
    for line in message.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


class NspawnEngine(EngineDefaults[NspawnMachine]):
    name = "systemd-nspawn"
    milestones = ("created", "init", "unit", "ready", "booted")
    order = (("created", "init", "unit", "ready"), ("init", "booted"))
    ready_after = "unit"

    def __init__(self, side: Side) -> None:
        self.side = side

    def check(self) -> dict[str, Any]:
        missing = [
            tool
            for tool in ("systemd-nspawn", "systemd-socket-activate", "ip", "unshare", "nsenter")
            if shutil.which(tool) is None
        ]
        if missing or not os.path.exists(PROXYD):
            raise BackendUnavailable(f"not installed: {', '.join(missing or [PROXYD])}", hint=HINT)
        if os.geteuid() != 0:
            raise BackendUnavailable("systemd-nspawn needs root", hint="run explorer as root")
        out = subprocess.run(
            ["systemd-nspawn", "--version"], check=False, capture_output=True, text=True, timeout=30
        ).stdout
        version = out.split("(")[0].strip() if out else "unknown"
        return {"engine": "systemd-nspawn", "engine_version": version, "summary": f"{version} (systemd-nspawn)"}

    def doctor_checks(self) -> list[DoctorCheck]:
        return [DoctorCheck("systemd-nspawn (systemd-container)", lambda: self.check()["summary"])]

    def create(self, scenario: Scenario, artifact: Artifact, run_id: str, index: int) -> Target[NspawnMachine]:
        name = machine_name(run_id, index)
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        parents = cgroup_parents(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mounts").read_text())
        machine = NspawnMachine(
            name,
            workdir,
            [parent / name for parent in parents],
            workload_port=scenario.workload.port,
            process_names=tuple(scenario.workload.processes),
            service=artifact.service or "explorer-workload.service",
        )
        target = Target(side=self.side.name, name=name, run_id=run_id, host_port=0, handle=machine)
        target.facts["machine"] = name  # the record: the machine's name (its cgroups', its netns')
        try:
            self._start(machine, target, Path(artifact.paths["rootfs"]), scenario.workload.port)
        except BaseException:  # an interrupt too: leave no process, mount, netns or cgroup
            with contextlib.suppress(BackendError):
                self.destroy(target)
            raise
        return target

    def _start(self, machine: NspawnMachine, target: Target[NspawnMachine], lower: Path, port: int) -> None:
        for sub in ("upper", "work", "merged"):
            (machine.workdir / sub).mkdir()
        for cgroup in machine.cgroups:
            (cgroup / "proxy").mkdir(parents=True, exist_ok=True)  # the proxy's; nspawn's is the parent
        machine.netns = machine.name
        _run(["ip", "netns", "add", machine.netns], "making its network namespace")
        _run(["ip", "-n", machine.netns, "link", "set", "lo", "up"], "bringing its loopback up")
        machine.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        machine.notify.bind(str(machine.workdir / "notify.sock"))
        machine.notify.setblocking(False)
        with machine.log.open("wb") as log:
            machine.process = subprocess.Popen(
                [*start_argv(machine, lower), *nspawn_argv(machine)],
                env={**os.environ, "NOTIFY_SOCKET": str(machine.workdir / "notify.sock")},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        target.mark("created")
        target.host_port = free_port()
        with (machine.workdir / "proxy.log").open("wb") as log:
            machine.proxy = subprocess.Popen(
                proxy_argv(machine, target.host_port, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.poll(target)

    def poll(self, target: Target[NspawnMachine]) -> None:
        """Read nspawn's notify messages and the unit's cgroup; raise if nspawn exited."""
        machine = target.held
        self._read_notify(target, machine)
        if machine.process is not None and machine.process.poll() is not None:
            raise BackendError(
                f"systemd-nspawn exited with code {machine.process.returncode} ({target.name})",
                hint="its last lines:\n" + self.logs(target),
            )
        if machine.proxy is not None and machine.proxy.poll() is not None:
            text = (machine.workdir / "proxy.log").read_text(errors="replace")[-500:]
            raise BackendError(f"the socket proxy of {target.name} exited: {text.strip()}")
        if machine.proxy is not None and not machine.proxy_started:
            machine.proxy_started = knock(target.host_port)
        if "unit" not in target.marks and machine.leader:
            procs = self._unit_procs(target, machine)
            if procs:
                target.mark("unit")
                names = {_name(pid) for pid in procs}
                target.facts["process_named"] = bool(names & set(machine.process_names))

    def _read_notify(self, target: Target[NspawnMachine], machine: NspawnMachine) -> None:
        while machine.notify is not None:
            try:
                message = parse_notify(machine.notify.recv(4096))
            except (BlockingIOError, OSError):
                return
            if message.get("X_NSPAWN_LEADER_PID", "").isdigit():
                machine.leader = int(message["X_NSPAWN_LEADER_PID"])
                target.mark("init")
            if message.get("READY") == "1":
                target.mark("booted")

    def _unit_procs(self, target: Target[NspawnMachine], machine: NspawnMachine) -> list[int]:
        """The processes of the workload's unit. Polled every 10 ms while the container boots:
        its cgroup is looked for where nspawn puts it (below `payload`, systemd >= 246; or at the
        top), two reads per hierarchy; the whole tree is walked (~1 ms, 15 cgroups here) only
        where nspawn made no `payload` cgroup."""
        unit = target.held.service
        for cgroup in machine.cgroups:
            places = [cgroup / "payload" / "system.slice" / unit / "cgroup.procs"]
            places += [cgroup / "system.slice" / unit / "cgroup.procs"]
            if not (cgroup / "payload").is_dir():
                places += procs_files(cgroup, f"/system.slice/{unit}")
            for procs in places:
                with contextlib.suppress(OSError):
                    found = [int(p) for p in procs.read_text().split()]
                    if found:
                        return found
        return []

    def after_ready(self, target: Target[NspawnMachine]) -> None:
        """The container's systemd reaching its default target (multi-user) may come after
        the service answers: waited for, bounded."""
        deadline = time.monotonic() + BOOTED_WAIT_S
        self.poll(target)
        while "booted" not in target.marks and time.monotonic() < deadline:
            time.sleep(0.05)
            self.poll(target)

    def host_pids(self, target: Target[NspawnMachine]) -> list[int]:
        """Every host process in the container's PID namespace (systemd, journald, the workload...)."""
        leader = target.handle.leader if target.handle is not None else None
        try:
            wanted = os.readlink(f"/proc/{leader}/ns/pid")
        except (OSError, TypeError):
            return []
        pids = []
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc.pid}/ns/pid") == wanted:
                    pids.append(proc.pid)
        return sorted(pids)

    def runtime_pids(self, target: Target[NspawnMachine]) -> dict[int, str]:
        process = target.handle.process if target.handle is not None else None
        return {process.pid: "nspawn"} if process is not None and process.poll() is None else {}

    def path_pids(self, target: Target[NspawnMachine]) -> dict[int, str]:
        proxy = target.handle.proxy if target.handle is not None else None
        return {proxy.pid: "proxy"} if proxy is not None and proxy.poll() is None else {}

    def load_paths(self, target: Target[NspawnMachine]) -> list[NetPath]:
        port, machine = target.held.workload_port, target.held
        published = NetPath(
            PUBLISHED,
            f"the host's 127.0.0.1:{target.host_port}: systemd-socket-proxyd, systemd's socket proxy, relays every "
            f"byte to 127.0.0.1:{port} in the container's network namespace",
            target.host_port,
            relay="systemd-socket-proxyd",
        )
        netns = machine.netns or machine.name  # made with the machine's name
        prefix = ("ip", "netns", "exec", netns)
        own = NetPath(
            OWN_NETNS,
            f"the client in the container's network namespace, made and named by explorer ({' '.join(prefix)}), "
            f"against 127.0.0.1:{port} there: its own loopback, no proxy",
            port,
            prefix,
            missing=None if os.path.exists(f"/run/netns/{netns}") else "the network namespace is gone",
        )
        return [published, own]

    def logs(self, target: Target[NspawnMachine], lines: int = 20) -> str:
        with contextlib.suppress(OSError, LookupError):
            text = target.held.log.read_text(errors="replace")
            return "\n".join(text.rstrip().splitlines()[-lines:])
        return ""

    def destroy(self, target: Target[NspawnMachine]) -> None:
        """Idempotent: the container halted (SIGTERM to nspawn), whatever is left in its
        cgroups killed, the cgroups, the netns and the work dir removed."""
        machine: NspawnMachine | None = target.handle
        if machine is None:
            return
        if machine.process is not None and machine.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                machine.process.send_signal(signal.SIGTERM)  # nspawn halts the container
            with contextlib.suppress(subprocess.TimeoutExpired):
                machine.process.wait(timeout=STOP_WAIT_S)
        if machine.notify is not None:
            machine.notify.close()
            machine.notify = None
        problems = remove_instance(machine.name, machine.cgroups, machine.workdir)
        for proc in (machine.process, machine.proxy):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_WAIT_S)
        if problems:
            raise BackendError(f"could not remove all of {machine.name}: {'; '.join(problems)}")

    def clean(self, run_id: str | None = None) -> list[str]:
        """One run's instances; or, without a run id, those of explorer processes that no
        longer run: their processes (by cgroup), cgroups, netns, work dirs, nspawn's /run dirs."""
        parents = cgroup_parents(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mounts").read_text())
        names: set[str] = set()
        for parent in parents:
            names |= {p.name for p in parent.glob(f"{PREFIX}*") if p.is_dir()}
        names |= set(_netns_names())
        names |= {_strip_suffix(p.name) for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}*")}
        removed = []
        for name in sorted(names):
            if (run_of(name) != run_id) if run_id else owner_alive(owner_of(name)):
                continue
            workdirs = list(Path(tempfile.gettempdir()).glob(f"{name}-*"))
            what = describe_leftover(name, parents, workdirs)
            problems = remove_instance(name, [p / name for p in parents], *workdirs)
            if problems:
                raise BackendError(f"could not remove {name}: {'; '.join(problems)}")
            removed += what
        return removed


def describe_leftover(name: str, parents: list[Path], workdirs: list[Path]) -> list[str]:
    out = [f"nspawn process {p}" for p in sorted(cgroup_pids([pp / name for pp in parents]))]
    out += [f"cgroup {pp / name}" for pp in parents if (pp / name).is_dir()]
    out += [f"network namespace {name}"] if name in _netns_names() else []
    out += [f"overlay mount {m}" for m in host_mounts(name)]
    return out + [f"work dir {w}" for w in workdirs]


def remove_instance(name: str, cgroups: list[Path], *workdirs: Path) -> list[str]:
    """Kill every process in the instance's cgroups, remove them (deepest first), its netns,
    any mount of it in the host's table (there should be none), nspawn's /run entry, and the
    work dirs. Returns what could not be removed."""
    problems = []
    deadline = time.monotonic() + STOP_WAIT_S
    while cgroup_pids(cgroups) and time.monotonic() < deadline:
        for pid in cgroup_pids(cgroups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for cgroup in cgroups:
        if not cgroup.is_dir():
            continue
        subdirs = [Path(top) / d for top, dirs, _ in os.walk(cgroup) for d in dirs]  # vanishing ones skipped
        for directory in sorted(subdirs, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        try:
            cgroup.rmdir()
        except OSError as exc:
            problems.append(f"cgroup {cgroup}: {exc.strerror}")
    if name in _netns_names():
        done = subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            problems.append(f"netns {name}: {done.stderr.strip()}")
    for mount in host_mounts(name):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True, timeout=30)
    shutil.rmtree(Path("/run/systemd/nspawn/propagate") / name, ignore_errors=True)
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
        if workdir.exists():
            problems.append(f"work dir {workdir} remains")
    return problems


def procs_files(cgroup: Path, under: str = "") -> list[Path]:
    """Every cgroup.procs below `cgroup` (in a directory whose path ends with `under`), walked
    with os.walk, which skips what a container's systemd removes meanwhile (Path.rglob raised
    FileNotFoundError on such a directory: CI saw it)."""
    return [
        Path(top) / "cgroup.procs"
        for top, _, files in os.walk(cgroup)
        if "cgroup.procs" in files and top.endswith(under)
    ]


def cgroup_pids(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for cgroup in cgroups:
        if not cgroup.is_dir():
            continue
        for procs in procs_files(cgroup):
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in procs.read_text().split()}
    return pids


def host_mounts(name: str) -> list[str]:
    """Mount points in the host's mount table under an instance's work dir."""
    with contextlib.suppress(OSError):
        text = Path("/proc/self/mounts").read_text()
        return [f[1] for f in (line.split() for line in text.splitlines()) if len(f) > 1 and f"/{name}-" in f[1]]
    return []


def _netns_names() -> list[str]:
    with contextlib.suppress(OSError):
        return [n for n in os.listdir("/run/netns") if n.startswith(PREFIX)]
    return []


def _strip_suffix(workdir_name: str) -> str:
    """explorer-nspawn-RUN-INDEX-PID-xxxx -> explorer-nspawn-RUN-INDEX-PID"""
    return workdir_name.rsplit("-", 1)[0] if workdir_name.count("-") >= 5 else workdir_name


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BackendError(f"{what} failed ({' '.join(argv)}): {done.stderr.strip()}")
