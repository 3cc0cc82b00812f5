"""The system container's start-to-ready: explorer's nspawn side against `systemd-nspawn -b`
by hand, in one run.

The floor is what a user types to boot the same root filesystem with a writable layer of its
own and reach its workload on loopback: a network namespace (`ip netns add`, lo up), an
overlayfs on the cached root in a private mount namespace, `systemd-nspawn -D MERGED -b
--register=no --keep-unit --network-namespace-path=...`, and a PING loop on 127.0.0.1 inside
that namespace (a client started under `ip netns exec` at t0, beside the boot). explorer's
figure is its own `ready_s` (create -> PONG, through its socket proxy on the host's
127.0.0.1) from lifecycle.measure. Rounds alternate floor and explorer so machine noise hits
both alike. Target: explorer within 1.05x of the floor. Exits 1 when it misses.

    python benchmarks/nspawn_startup.py [--rounds N] [--scenario redis]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from startup_floor import one_side, verdict  # beside this file

from explorer import readiness

SIDE = "nspawn"
# the floor's PING loop, inside the netns: prints CLOCK_MONOTONIC at the first PONG
PINGER = """
import socket, sys, time
port, every = int(sys.argv[1]), float(sys.argv[2])
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(b"PING\\r\\n")
            if s.recv(64).startswith(b"+PONG"):
                print(time.monotonic(), flush=True)
                break
    except OSError:
        pass
    time.sleep(every)
"""
# join its own cgroups (so that nspawn's /payload is not the root's), mount, exec nspawn
MOUNT_EXEC = """
set -e
for procs in $5; do echo $$ > "$procs"; done
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
shift 5
exec "$@"
"""


__all__ = ["main", "verdict"]  # verdict: what this benchmark exits by (tests/unit/test_bench_verdicts.py)


def by_hand(root: Path, port: int) -> float:
    """netns + overlay + systemd-nspawn -b + PING loop inside the netns; everything removed."""
    name = f"bench-nspawn-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    cgroups = [Path("/sys/fs/cgroup/systemd") / name, Path("/sys/fs/cgroup/unified") / name]
    cgroups = [c for c in cgroups if c.parent.is_dir()]
    for sub in ("upper", "work", "merged"):
        (work / sub).mkdir()
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "add", name], check=True)
    pinger = boot = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", PINGER, str(port), str(readiness.INTERVAL_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for cgroup in cgroups:
            cgroup.mkdir()
        boot = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", MOUNT_EXEC, "sh"]
            + [str(root), str(work / "upper"), str(work / "work"), str(work / "merged")]
            + [" ".join(str(c / "cgroup.procs") for c in cgroups)]
            + ["systemd-nspawn", "-q", "-D", str(work / "merged"), "-b", "--register=no", "--keep-unit"]
            + [f"--machine={name}", f"--network-namespace-path=/run/netns/{name}", "--console=read-only"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out, _ = pinger.communicate(timeout=120)
        return float(out.strip()) - t0
    finally:
        if pinger is not None and pinger.poll() is None:
            pinger.kill()
        if boot is not None:
            boot.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                boot.wait(timeout=15)
        for cgroup in cgroups:
            _kill_and_remove(cgroup)
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _kill_and_remove(cgroup: Path) -> None:
    if not cgroup.is_dir():
        return
    for procs in cgroup.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.2)
    for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()


def main() -> int:
    return one_side(
        SIDE,
        __doc__ or "",
        "by hand (systemd-nspawn -b + PING in its netns)",
        lambda artifact, scen: lambda: by_hand(Path(artifact.paths["rootfs"]), scen.workload.port),
    )


if __name__ == "__main__":
    sys.exit(main())
