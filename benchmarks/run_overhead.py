"""Where a run's wall time goes: `explorer run redis --sides runc,microvm --repeat 3`, run in
process (lifecycle.run), and the share of its wall time outside the measured create -> ready
windows: checks, image lookups, probes, destroys, cleanup and waits are explorer's own cost.
Target: at most 10% of the wall time. The images must be built already (a build is not a run's
overhead): run `explorer build redis` first.

    python benchmarks/run_overhead.py [--scenario redis] [--sides runc,microvm] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import psutil

from explorer import lifecycle, scenario, sides
from explorer.output import report

TARGET = 0.10


def outside_share(result: dict) -> tuple[float, float, float]:
    """(wall time, time inside the create -> ready windows, share outside them)."""
    phases = result["phases"]
    total = phases["total_s"]
    inside = sum(p["starts_s"] for p in phases["sides"].values())
    return total, inside, (total - inside) / total if total else 0.0


def orphan_reap_s() -> float:
    """How long this host's init takes to reap a killed orphan (QEMU is one: libvirt daemonizes
    it), which libvirt waits for before a destroyed domain is gone. Near zero under systemd;
    about a second where PID 1 reaps on a timer."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child forks the orphan-to-be and exits at once
        if os.fork() == 0:
            os.close(read)
            os.write(write, str(os.getpid()).encode())
            time.sleep(60)
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    orphan = int(os.read(read, 32))
    os.close(read)
    started = time.monotonic()
    os.kill(orphan, signal.SIGKILL)
    while os.path.exists(f"/proc/{orphan}") and time.monotonic() - started < 10:
        time.sleep(0.005)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="redis")
    parser.add_argument("--sides", default="runc,microvm")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = lifecycle.run(scenario.load(args.scenario), lifecycle.Choice(names=sides.parse(args.sides)), args.repeat)
    print(report.table(*report.time_table(result), "table"))
    for name, p in result["phases"]["sides"].items():
        print(f"{name}: create -> ready per start: {p['start_s']}")
    total, inside, share = outside_share(result)
    verdict = "within" if share <= TARGET else "over"
    print(
        f"\n{total:.2f} s wall, {inside:.2f} s in the create -> ready windows: {share:.1%} outside them "
        f"({verdict} the {TARGET:.0%} target)"
    )
    teardown = sum(p.get("destroy_s", 0.0) + p.get("clean_s", 0.0) for p in result["phases"]["sides"].values())
    own = total - inside - teardown
    print(
        f"of which the engines' teardown (destroy and clean: docker's removal, libvirt's) {teardown:.2f} s "
        f"({teardown / total:.1%}); the rest, explorer's own (check, prepare, probes, waits) {own:.2f} s "
        f"({own / total:.1%})"
    )
    vm_sides = [n for n, side in result["sides"].items() if side.get("kind") == "vm"]
    if vm_sides:  # a destroyed domain is gone once its killed QEMU is reaped: see LibvirtEngine.destroy
        print(reaper_note(total, inside))
    return 0 if share <= TARGET else 1


def reaper_note(total: float, inside: float) -> str:
    """Who reaps libvirtd's QEMUs (their nearest subreaper, else PID 1), and what that costs."""
    daemons = [p for p in psutil.process_iter(["name", "ppid"]) if p.info["name"] == "libvirtd"]
    parent = psutil.Process(daemons[0].info["ppid"]) if daemons and daemons[0].info["ppid"] > 1 else None
    reap = orphan_reap_s()
    if parent is not None:
        return (
            f"libvirtd runs under {parent.name()} (pid {parent.pid}), which reaps a killed QEMU at once; "
            f"this host's init would take {reap:.2f} s per VM (scripts/setup-host avoids it)"
        )
    own = (total - inside - reap) / total
    return (
        f"this host's init reaps a killed orphan in {reap:.2f} s; libvirt waits for that once per VM side "
        f"(its cleanup): without it, {own:.1%} outside the windows"
    )


if __name__ == "__main__":
    sys.exit(main())
