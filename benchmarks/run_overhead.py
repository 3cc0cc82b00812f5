"""Where a run's wall time goes: `explorer run redis --sides runc,microvm --repeat 3`, run in
process (runner.run), and the share of its wall time outside the measured create -> ready
windows: checks, image lookups, probes, destroys, cleanup and waits are explorer's own cost.
Target: at most 10% of the wall time. The images must be built already (a build is not a run's
overhead): run `explorer build redis` first.

    python benchmarks/run_overhead.py [--scenario redis] [--sides runc,microvm] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys

from explorer import report, runner, scenario, sides

TARGET = 0.10


def outside_share(result: dict) -> tuple[float, float, float]:
    """(wall time, time inside the create -> ready windows, share outside them)."""
    phases = result["phases"]
    total = phases["total_s"]
    inside = sum(p["starts_s"] for p in phases["sides"].values())
    return total, inside, (total - inside) / total if total else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="redis")
    parser.add_argument("--sides", default="runc,microvm")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = runner.run(scenario.load(args.scenario), sides.parse(args.sides), args.repeat)
    print(report.table(*report.time_table(result), "table"))
    total, inside, share = outside_share(result)
    verdict = "within" if share <= TARGET else "over"
    print(f"\n{total:.2f} s wall, {inside:.2f} s in the create -> ready windows: {share:.1%} outside them "
          f"({verdict} the {TARGET:.0%} target)")
    return 0 if share <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
