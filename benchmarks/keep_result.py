"""Keeping a result (explorer/output/results.py): what it adds to a run, against a bare floor in
the same run.

explorer's figure is results.keep(): the file's name from the typed document, a temporary file in
the results directory, the document serialized from its models, renamed into place. The floor is
json.dumps of the same document as plain data and one plain write to a file in the same directory. Rounds alternate the two. Target:
keeping adds at most 100 ms to a run (the median of explorer's figure; the ratio to the floor is
printed too). Exits 1 when the target is missed.

    python benchmarks/keep_result.py [--rounds N] [RESULT.json]
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
from explorer.output import results

TARGET_S = 0.100
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "unit" / "fixtures"


def verdict(median_s: float, target_s: float = TARGET_S) -> tuple[bool, str]:
    """Whether the median keep time meets the target, and the line that says so."""
    met = median_s <= target_s
    return met, f"  keeping adds {median_s * 1000:.1f} ms median (target <= {target_s * 1000:.0f} ms): " + (
        "met" if met else "MISSED"
    )


def biggest_fixture() -> Path:
    return max(FIXTURES.glob("*.json"), key=lambda p: p.stat().st_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("result", nargs="?", type=Path, default=None)
    args = parser.parse_args()
    path = args.result or biggest_fixture()
    doc = document.load_result(path)  # the typed document, as `run` holds it when it keeps it
    raw = json.loads(doc.model_dump_json(by_alias=True))  # the same document as plain JSON data
    floor, kept = [], []
    with tempfile.TemporaryDirectory(prefix="keep-bench-") as folder:
        where = Path(folder)
        for i in range(args.rounds):
            t0 = time.perf_counter()
            (where / f"floor-{i}.json").write_text(json.dumps(raw, indent=2) + "\n")
            floor.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            results.keep(doc, where)
            kept.append(time.perf_counter() - t0)
    f, k = statistics.median(floor), statistics.median(kept)
    size = len(json.dumps(raw, indent=2))
    print(f"keeping a result of {size / 1024:.0f} KiB ({path.name}), {args.rounds} rounds")
    print(f"  bare floor (json.dumps + one write): median {f * 1000:.1f} ms (min {min(floor) * 1000:.1f})")
    print(f"  explorer (results.keep):             median {k * 1000:.1f} ms (min {min(kept) * 1000:.1f})")
    print(f"  ratio explorer/floor: {k / f:.2f}x")
    met, line = verdict(k)
    print(line)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
