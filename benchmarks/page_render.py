"""How long the results page takes to make: page.render + page.write of a result, against a bare
floor (the same document dumped as JSON, and one empty matplotlib figure saved as SVG: what any
page with a chart pays at least).

Target: at most 3 s for a six-side result, matplotlib included: timed in a fresh process, as the
CLI makes the page once per run (matplotlib's import, ~0.8 s here, and its font set-up are
paid then), median of --cold runs. The page and the floor are timed that way and again in this
process, matplotlib loaded (--runs), with the ratios of their medians.

The result: --file, or the measured six-side fixture (tests/unit/fixtures/six-sides.json) the
target was set on; an eight-side result (make demo's) is --file tests/unit/fixtures/eight-sides.json.

Run it alone on a quiet machine (as `make bench` is meant to run): with another job's tests on
this 2-core host, the floor's own import of matplotlib took 1.9 s instead of 0.9 and every
figure doubled; page / floor is the figure that travels.

    python benchmarks/page_render.py [--file RESULT.json] [--runs 5] [--cold 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' documents (tests/unit/documents.py), as the tests read them

from explorer.document import load_result
from explorer.output import page
from explorer.result import Result

TARGET_S = 3.0
FIXTURES = ROOT / "tests" / "unit" / "fixtures"


def biggest_fixture() -> Path:
    """The six-side fixture this benchmark's target was set on (the eight-side one, make demo's
    of 2026-12-07, is the mutation test's)."""
    return FIXTURES / "six-sides.json"


def subjects(file: str | None) -> list[tuple[str, Result]]:
    """(name, judged result) of what to time."""
    from tests.unit.documents import judged, six_sides  # the repository's tests, on the path above

    path = Path(file) if file else biggest_fixture()
    found = [(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), judged(load_result(path)))]
    if not file and len(found[0][1].sides) < 6:
        found.append(("six sides built by tests/unit/documents.py", judged(six_sides())))
    return found


def render_once(result: Result, out: Path) -> float:
    started = time.monotonic()
    page.write([("run", result)], out)
    return time.monotonic() - started


def floor_once(result: Result, out: Path) -> float:
    """The least a page with one chart costs: the document as JSON, one empty figure as SVG."""
    started = time.monotonic()
    from matplotlib.figure import Figure  # timed: in a fresh process its import is the floor's part

    buffer = io.StringIO()
    Figure(figsize=(10, 3)).savefig(buffer, format="svg")
    out.write_text(result.model_dump_json(by_alias=True) + buffer.getvalue())
    return time.monotonic() - started


def cold(kind: str, result: Result, work: Path) -> float:
    """One render (or the floor) in a fresh process: matplotlib's import and set-up included."""
    doc = work / "cold.json"
    doc.write_text(result.model_dump_json(by_alias=True))
    argv = [sys.executable, __file__, "--time-one", kind, str(doc), str(work / f"cold-{kind}.html")]
    return float(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout)


TIMED = {"page": render_once, "floor": floor_once}


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f} s, median {statistics.median(values):.3f} s, max {max(values):.3f} s"


def ratio(page_s: list[float], floor_s: list[float]) -> str:
    return f"{statistics.median(page_s) / statistics.median(floor_s):.1f}x"


def verdict(median_s: float, target_s: float = TARGET_S) -> tuple[bool, str]:
    """Whether a fresh process's median render meets the target, and the words that say so."""
    met = median_s <= target_s
    return met, f"target {target_s:g} s (median): {'met' if met else 'MISSED'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", help="a result document (default: the biggest fixture)")
    parser.add_argument("--runs", type=int, default=5, help="warm runs in this process")
    parser.add_argument("--cold", type=int, default=3, help="runs each in a fresh process")
    parser.add_argument("--time-one", nargs=3, metavar=("KIND", "RESULT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_one:  # the child of cold(): print the seconds of one render or floor
        kind, doc, out = args.time_one
        print(TIMED[kind](load_result(doc), Path(out)))
        return 0
    missed = False
    with tempfile.TemporaryDirectory(prefix="explorer-page-bench.") as tmp:
        work = Path(tmp)
        for name, result in subjects(args.file):
            first = [cold("page", result, work) for _ in range(args.cold)]
            first_floor = [cold("floor", result, work) for _ in range(args.cold)]
            warm = [render_once(result, work / "page.html") for _ in range(args.runs)]
            floor = [floor_once(result, work / "floor.html") for _ in range(args.runs)]
            met, said = verdict(statistics.median(first))
            print(f"{name}: {len(result.sides)} sides, a page of {(work / 'page.html').stat().st_size / 1024:.0f} KiB")
            print(f"  fresh process: render + write {spread(first)}; {said}")
            print(f"                 floor {spread(first_floor)}; page / floor {ratio(first, first_floor)}")
            print(f"  matplotlib loaded: render + write {spread(warm)}")
            print(f"                     floor {spread(floor)}; page / floor {ratio(warm, floor)}")
            missed = missed or not met
    print("floor: the document as JSON and one empty matplotlib figure as SVG, written to a file")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
