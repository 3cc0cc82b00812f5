"""Reading a kept result back (explorer/document.py): the file read, older versions upgraded,
the whole document parsed and validated into its typed models, against a bare floor in the same
run (the file read and json.loads: what any reader of the JSON pays).

Target: at most 150 ms for a result of `make demo`'s size (its eight sides with the inside
probe, eight-sides-v4.json, or --file), median over --rounds, the two alternating; the ratio to
the floor is printed too. An older result (eight-sides.json, version 3) is read first, with its
upgrade, and printed for comparison. Exits 1 when the target is missed.

    python benchmarks/parse_result.py [--rounds N] [--file RESULT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from explorer import document

TARGET_S = 0.150
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "unit" / "fixtures"
FIXTURE, OLDER = FIXTURES / "eight-sides-v4.json", FIXTURES / "eight-sides.json"


def verdict(median_s: float, target_s: float = TARGET_S) -> tuple[bool, str]:
    met = median_s <= target_s
    return met, f"  parsing adds up to {median_s * 1000:.1f} ms median (target <= {target_s * 1000:.0f} ms): " + (
        "met" if met else "MISSED"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--file", type=Path, default=FIXTURE)
    args = parser.parse_args()
    floor, parsed = [], []
    with tempfile.TemporaryDirectory(prefix="parse-bench-") as folder:
        for label, source in (("as kept by an older explorer", OLDER), ("as this explorer writes it", args.file)):
            path = Path(folder) / source.name  # written by this explorer: the current version, as it keeps it
            path.write_text(
                source.read_text()
                if source == OLDER
                else document.load_result(source).model_dump_json(by_alias=True, indent=2)
            )
            floor, parsed = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                json.loads(path.read_text())
                floor.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                result = document.load_result(path)
                parsed.append(time.perf_counter() - t0)
            f, p = statistics.median(floor), statistics.median(parsed)
            size = path.stat().st_size
            print(f"{path.name}, {label}: {size / 1024:.0f} KiB, {len(result.sides)} sides, {args.rounds} rounds")
            print(f"  bare floor (read + json.loads): median {f * 1000:.1f} ms")
            print(f"  explorer (document.load_result): median {p * 1000:.1f} ms (max {max(parsed) * 1000:.1f})")
            print(f"  ratio explorer/floor: {p / f:.2f}x")
    met, line = verdict(statistics.median(parsed))
    print(line)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
