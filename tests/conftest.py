"""Shared fixtures: one built image per session, daemons checked once, skips that say why.

Also the suite's shared helpers (plain functions, imported as `from tests.conftest import ...`):
the independent tools the tests cross-check explorer with (ps, the docker CLI), and a reader
for the newc cpio archives explorer writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import psutil
import pytest

from explorer.model import LABEL_MANAGED, LABEL_OWNER, LABEL_RUN, LABEL_SCENARIO

ROOT = Path(__file__).resolve().parent.parent

# explorer keeps a SIGHUP that nohup ignores ignored (interrupts.install), and an ignored signal
# is inherited: the suite started under nohup would make every SIGHUP test a test of nohup. The
# tests that send SIGHUP measure explorer's own handling, so the suite starts from the default
# (what a terminal gives); tests/unit/test_reliability.py checks the nohup case on purpose.
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
# Likewise SIGINT: a shell starts a background job (`make test &`) with SIGINT ignored, and every
# explorer the suite starts would inherit that, turning the Ctrl-C tests into tests of the shell.
# A handler (unlike SIG_IGN) is reset to the default in every child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def kept_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every run keeps its result (explorer/output/results.py): the suite's go to a folder of
    its own, not the user's ~/.local/share/explorer/results."""
    folder = tmp_path_factory.mktemp("kept-results")
    os.environ["EXPLORER_RESULTS"] = str(folder)
    return folder


def explorer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "explorer.cli", *args]


class Explorer(subprocess.Popen):
    """The CLI in a child process whose output goes to files, not pipes: a test that polls `ps`
    while it runs reads nothing until the end, and a pipe it does not read fills at 64 KiB and
    blocks the CLI mid-run. communicate() waits and returns what it printed, as Popen's does."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> None:
        """`prefix`: a command that execs the CLI in the same process (its PID stays explorer's)."""
        self.files = (tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+"))  # noqa: SIM115 - closed in communicate()
        self.printed: tuple[str, str] | None = None
        super().__init__(
            [*prefix, *explorer_argv(*args)],
            stdout=self.files[0],
            stderr=self.files[1],
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """Wait, then what it printed; a second call (a test's `finally`) returns the same."""
        self.wait(timeout)
        if self.printed is None:
            out = []
            for handle in self.files:
                handle.seek(0)
                out.append(handle.read())
                handle.close()
            self.printed = (out[0], out[1])
        return self.printed


def wait_for(proc: subprocess.Popen, seen: Callable[[], object], timeout: float = 300, every: float = 0.02) -> bool:
    """Poll `seen` while `proc` runs: True as soon as it holds, False if the run ended or the
    time ran out first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if seen():
            return True
        time.sleep(every)
    return False


def ctrl_c_when(
    proc: subprocess.Popen,
    seen: Callable[[], object],
    what: str,
    settle_s: float = 0.0,
    timeout: float = 300,
    every: float = 0.05,
    exit_s: float = 120,
) -> str:
    """Ctrl-C (SIGINT) to a run once `seen` holds (within `timeout`, and `settle_s` more), as a user
    at its terminal: it must exit 130 (within `exit_s`) without a traceback; its stderr. The run is
    killed should it outlive the test."""
    try:
        assert wait_for(proc, seen, timeout=timeout, every=every), f"never seen: {what}"
        time.sleep(settle_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=exit_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    return err


def run_explorer(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, in a child process."""
    return subprocess.run(
        explorer_argv(*args),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip with `reason` on a developer's machine; in CI (where everything must be set up), fail."""
    if os.environ.get("CI"):
        pytest.fail(f"in CI this must not be skipped: {reason}")
    pytest.skip(reason)


def explorer_containers(client, label: str = LABEL_MANAGED) -> list[str]:
    """Names of the containers carrying `label`, listed without inspecting each one (a
    container that its run removes meanwhile would make docker-py's list() fail)."""
    return sorted(c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters={"label": label}))


def clean_is_safe(client, timeout_s: float = 120) -> None:
    """Wait until no *running* explorer container lacks an owner label: one made by an explorer
    without owner labels (another checkout on this machine) that `explorer clean` cannot tell
    from a leftover. Stopped ones are leftovers, fair to remove."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        unowned = [
            c["Names"][0]
            for c in client.api.containers(filters={"label": LABEL_MANAGED})
            if LABEL_OWNER not in (c.get("Labels") or {})
        ]
        if not unowned:
            return
        if time.monotonic() > deadline:
            skip_or_fail_in_ci(f"running explorer containers without an owner label: {unowned}")
        time.sleep(1)


def partials_of(pid: int, cache: Path | None = None) -> list[Path]:
    """The build partials and VM work dirs explorer process `pid` made and left (other
    checkouts on this machine build meanwhile: only the PID in a name says whose it is)."""
    from explorer.cache import cache_root
    from explorer.images import partials

    found = [p for p in Path(tempfile.gettempdir()).glob("explorer-vm-*") if p.name.split("-")[4] == str(pid)]
    for directory, prefix in partials.locations(cache or cache_root()):
        found += [p for p in directory.glob(f"{prefix}{pid}-*")]
    return sorted(found)


def run_explorer_traced(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, int]:
    """run_explorer, and the PID the CLI ran as (what its labels and partials carry)."""
    proc = subprocess.Popen(
        explorer_argv(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def containers_labelled(label: str, value: str) -> list[str]:
    """`docker ps -a` (the CLI, not explorer's client): the names of the containers, in any
    state, whose `label` is `value`."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={label}={value}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out.split()


def containers_owned_by(pid: int) -> list[str]:
    """The containers explorer process `pid` labelled as its own."""
    return containers_labelled(LABEL_OWNER, str(pid))


def containers_of_run(run_id: str) -> list[str]:
    """The containers of explorer's run `run_id`, by its run label."""
    return containers_labelled(LABEL_RUN, run_id)


def virsh_names(run_id: str | None = None) -> list[str]:
    """`virsh list --all --name` (the CLI, not explorer's connection): every domain, or those of
    explorer's run `run_id` (its name carries the run id)."""
    out = subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [name for name in out.split() if run_id is None or f"-{run_id}-" in name]


def running_container(backend, scenario, artifact):
    """A generator for a fixture: one ready container of `backend`, destroyed and its run cleaned after."""
    from explorer import lifecycle, readiness

    run_id = lifecycle.new_run_id()
    target = backend.create(scenario, artifact, run_id, 0)
    try:
        readiness.wait_ready("redis", "127.0.0.1", target.host_port, time.monotonic() + 60)
        yield target
    finally:
        backend.destroy(target)
        backend.clean(run_id)


def containers_of(scenario: str) -> list[str]:
    """The containers of `scenario`."""
    return containers_labelled(LABEL_SCENARIO, scenario)


def docker_image_inspect(ref: str) -> dict:
    """`docker image inspect REF` (the CLI, not explorer's client), as a dict."""
    out = subprocess.run(
        ["docker", "image", "inspect", ref], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    (image,) = json.loads(out)
    return image


def ps_e(field: str) -> dict[int, str]:
    """`ps -ww -e` as the host shows it: PID -> `field` (a ps output field such as comm or args,
    untruncated; several comma-separated fields give the rest of the line, read in one snapshot)."""
    columns = ",".join(f"{name}=" for name in ("pid", *field.split(",")))
    out = subprocess.run(["ps", "-ww", "-e", "-o", columns], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        pid, _, value = line.strip().partition(" ")
        if pid:
            table[int(pid)] = value.lstrip()
    return table


def in_a_container(pid: int) -> bool:
    """A process under a containerd shim is some container's (another test on a shared machine),
    not a VM's; in CI nothing else runs meanwhile."""
    try:
        return any(p.name().startswith("containerd-shim") for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def qemu_processes(mentioning: str) -> list[str]:
    """`ps -e` lines ("PID args") of QEMU processes whose command line mentions `mentioning`
    (other VMs may run on the machine meanwhile: only ours count)."""
    return [f"{pid} {args}" for pid, args in ps_e("args").items() if "qemu-system" in args and mentioning in args]


def cpio_members(archive: bytes) -> dict[str, tuple[int, bytes, int, int]]:
    """name -> (mode, data, rdevmajor, rdevminor), read back from a newc archive, which must
    end with its TRAILER!!! entry."""
    members, pos = {}, 0
    while True:
        assert archive[pos : pos + 6] == b"070701", f"no newc header at offset {pos}"
        fields = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = archive[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return members
        members[name] = (fields[1], archive[pos : pos + filesize], fields[9], fields[10])
        pos += filesize + (-filesize % 4)


def backend_or_skip(side: str):
    """A checked backend; a missing daemon skips with its reason, except in CI, where it fails."""
    from explorer.backends import backend_for
    from explorer.errors import BackendUnavailable

    backend = backend_for(side)
    try:
        backend.check()
    except BackendUnavailable as exc:
        if backend.side.package and backend.side.package in not_in_distribution():
            pytest.skip(f"the {side} side needs {backend.side.package}, which this distribution does not carry")
        skip_or_fail_in_ci(f"the {side} backend is not available: {exc}")
    return backend


def not_in_distribution() -> set[str]:
    """Packages scripts/setup-host found missing from this distribution (e.g. runsc on Ubuntu)."""
    path = Path(os.environ.get("EXPLORER_LOG_DIR", "/var/log/explorer")) / "not-in-distribution"
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


@pytest.fixture(scope="session")
def docker_backend():
    return backend_or_skip("runc")


@pytest.fixture(scope="session")
def libvirt_backend():
    return backend_or_skip("microvm")


@pytest.fixture(scope="session")
def redis_scenario():
    from explorer import scenario

    return scenario.load("redis")


@pytest.fixture(scope="session")
def redis_artifact(docker_backend, redis_scenario):
    """The offline redis image, built once (cached by content hash across sessions too)."""
    return docker_backend.prepare(redis_scenario)


def host_leftovers() -> dict[str, set[str]]:
    """What any side could leave on the host, read with the host's own tools (none of explorer's
    code): containers (Docker's and Podman's), libvirt domains, nspawn processes, mounts, loop
    devices, network namespaces, veth interfaces, CNI address reservations and conmon processes.
    A tool that is not installed gives an empty set. /run/netns's own mount (a shared mount point,
    made once and kept) is not a leftover; the namespaces mounted in it count as namespaces."""

    def lines(*argv: str) -> set[str]:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return set()
        return {line.strip() for line in out.splitlines() if line.strip()}

    mounts: dict[str, int] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point != "/run/netns" and not point.startswith("/run/netns/"):
            mounts[point] = mounts.get(point, 0) + 1
    reservations = {
        f"{p.parent.name}/{p.name}"
        for p in Path("/var/lib/cni/networks").glob("*/*")
        if not p.name.startswith(("last_reserved_ip", "lock"))
    }
    processes = ps_e("stat,comm")
    return {
        "Docker containers": lines("docker", "ps", "-a", "--format", "{{.Names}}"),
        "Podman containers": lines("podman", "ps", "-a", "--format", "{{.Names}}"),
        "libvirt domains": lines("virsh", "-c", "qemu:///system", "list", "--all", "--name"),
        "nspawn processes": {f"{pid}" for pid, value in processes.items() if value.split()[-1] == "systemd-nspawn"},
        "mounts": {f"{point} (x{count})" if count > 1 else point for point, count in mounts.items()},
        "loop devices": lines("losetup", "--all", "--noheadings", "--output", "NAME,BACK-FILE"),
        "network namespaces": {line.split()[0] for line in lines("ip", "netns", "list")},
        "veth interfaces": {
            line.split()[1].split("@")[0] for line in lines("ip", "-o", "link", "show", "type", "veth")
        },
        "CNI reservations": reservations,
        "conmon processes": {
            f"{pid}" for pid, value in processes.items() if value.split()[-1] == "conmon" and not value.startswith("Z")
        },
    }


def new_leftovers(before: dict[str, set[str]], settle_s: float = 15.0) -> dict[str, list[str]]:
    """What is on the host now and was not in `before`, given `settle_s` to go (a conmon running
    `podman container cleanup`, a domain libvirt is still undefining): kind -> what."""
    deadline = time.monotonic() + settle_s
    while True:
        now = host_leftovers()
        new = {kind: sorted(now[kind] - before.get(kind, set())) for kind in now}
        new = {kind: items for kind, items in new.items() if items}
        if not new or time.monotonic() >= deadline:
            return new
        time.sleep(0.5)
