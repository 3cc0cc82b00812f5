"""The answer at a glance, what a run prints first: the document's claims against the sides in
one grid (a mark and a word per cell; the word decides), one line per side that departs from
a claim, and the key figures per side in one compact table. Each is laid out to fit the
terminal's width: sides as columns with full words where they fit, shorter words with a legend
where they do not, and the grid turned (sides as rows) when even that is too wide."""

from __future__ import annotations

from rich.cells import cell_len

from explorer.document import side_title
from explorer.output import costs, fit
from explorer.result import JudgedClaim, PathLoad, Result, SideRecord, Spread
from explorer.units import human_bytes, seconds

NOT_MEASURED = "not measured"
# verdict -> (mark, the word in full, the word where space is short)
MARKS = {
    "reproduced": ("✓", "reproduced", "yes"),
    "not reproduced": ("✗", "not reproduced", "NO"),
    "inconclusive": ("?", "inconclusive", "unsure"),
    NOT_MEASURED: ("-", NOT_MEASURED, "n/a"),
}


def cell(verdict: str, short: bool = False) -> str:
    """A mark and a word, never split across lines (no-break spaces, undone when printed)."""
    mark, word, brief = MARKS.get(verdict, ("?", verdict, verdict))
    return f"{mark} {brief if short else word}".replace(" ", fit.NBSP)


def _columns(result: Result) -> list[str]:
    """The measured sides, then those that were not measured, in the result's order."""
    return [*result.sides, *(n for n in result.skipped if n not in result.sides)]


def _verdict(claim: JudgedClaim, name: str) -> str:
    side = claim.sides.get(name)
    return side.verdict if side else NOT_MEASURED


def _label(index: int, claim: JudgedClaim) -> str:
    return f"{index} {claim.short or claim.claim}"


def _title(result: Result, name: str) -> str:
    side = result.sides.get(name)
    return side_title(side, name) if side is not None else name


def _legend(result: Result, width: int) -> str:
    names = "; ".join(f"{n} = {_title(result, n)}" for n in _columns(result))
    return fit.paragraph(f"sides: {names}", width)


def _word_legend(width: int) -> str:
    words = ", ".join(f"{mark} {brief} = {word}" for mark, word, brief in MARKS.values())
    return fit.paragraph(words, width)


def grid(result: Result, width: int) -> str:
    """Claims x sides within `width`: full words, else short words, else turned."""
    claims, names = result.claims, _columns(result)
    if not claims:
        return "(no claims judged)"
    for short in (False, True):
        rows = [[_label(i, c), *(cell(_verdict(c, n), short) for n in names)] for i, c in enumerate(claims, 1)]
        text = fit.table(["claim", *names], rows, width)
        if text is not None and all(cell_len(line) <= width for line in text.split("\n")):
            legend = [_legend(result, width)] + ([_word_legend(width)] if short else [])
            return "\n".join([text, *legend])
    turned = [[n, *(cell(_verdict(c, n), True) for c in claims)] for n in names]
    text = fit.table(["side", *(str(i) for i in range(1, len(claims) + 1))], turned, width)
    key = "; ".join(_label(i, c) for i, c in enumerate(claims, 1))
    legend = [fit.paragraph(f"claims: {key}", width), _legend(result, width), _word_legend(width)]
    shown = text or "\n".join(fit.paragraph(" ".join(row), width, rest="    ") for row in turned)
    return "\n".join([shown, *legend])


def grid_rows(result: Result) -> tuple[list[str], list[list[str]]]:
    """The grid with full words, for a format whose tables have no width (Markdown)."""
    names = _columns(result)
    claims = result.claims
    rows = [[_label(i, c), *(fit.unglue(cell(_verdict(c, n))) for n in names)] for i, c in enumerate(claims, 1)]
    return ["claim", *names], rows


def departures(result: Result, width: int) -> list[str]:
    """For each claim some side does not reproduce, one line per such side: which, and why."""
    lines = []
    for i, claim in enumerate(result.claims, 1):
        for name, side in claim.sides.items():
            if side.verdict == "reproduced":
                continue
            why = side.brief or side.why or side.evidence or "no evidence recorded"
            text = f"{i} {claim.short or claim.claim}: {name} {side.verdict}: {why}"
            lines.append(fit.paragraph(text, width, indent="  ", rest="    "))
    return lines


def _image(side: SideRecord) -> str:
    img = side.image
    if img is None:
        return "-"
    content = img.content_bytes if img.content_bytes is not None else img.one_size_bytes
    if content is None:
        return "-"
    stored = img.stored_bytes
    return human_bytes(content) + (f" / {human_bytes(stored)}" if stored is not None else "")


def ready_spread(side: SideRecord) -> Spread | None:
    """The side's start-to-ready over its starts (None: no start measured it)."""
    return side.startup.ready if side.startup is not None else None


def _ready(side: SideRecord) -> str:
    summary = ready_spread(side)
    return seconds(summary.median) if summary else "-"


def _memory(side: SideRecord) -> str:
    marginal = side.density.marginal_pss_bytes if side.density is not None else None
    if marginal is not None:
        return f"{human_bytes(marginal)} (N)"
    total = side.memory.host_total.pss_bytes if side.memory is not None else None
    return human_bytes(total) if total is not None else "-"


def _per_op(figures: PathLoad) -> str:
    per_op = figures.traced.per_op if figures.traced is not None else None
    return "-" if per_op is None else f"{per_op:.2f}"


def _load_figures(result: Result, name: str) -> tuple[str, str]:
    """Throughput against native and host calls per operation, one figure per path the side
    was loaded on, in its order (a container: its published port, then its own netns)."""
    rows = [row for row in costs.paths_of(result) if row.side == name]
    if not rows:
        return "-", "-"
    ratios = " / ".join("-" if row.ratio is None else f"{row.ratio:.2f}x" for row in rows)
    return ratios, " / ".join(_per_op(row.load) for row in rows)


KEY_HEADERS = ["side", "image content / stored", "ready (median)", "host memory", "ops/s vs native", "host calls/op"]


def key_rows(result: Result) -> tuple[list[str], list[list[str]]]:
    """One row per side: image, start to ready, host memory per instance, load against native;
    then the native reference's row where the result has one."""
    rows = []
    for name, side in result.sides.items():
        rows.append([name, _image(side), _ready(side), _memory(side), *_load_figures(result, name)])
    native = result.load.native if result.load is not None else None
    rate = costs.median(native, "ops_s")
    if rate and native is not None:
        rows.append(["native", "-", "-", "-", f"1.00x ({rate:,.0f}/s)", _per_op(native)])
    return KEY_HEADERS, rows


def key_figures(result: Result, width: int) -> str:
    """The key figures within `width`, with the notes that say how to read them."""
    _headers, rows = key_rows(result)
    text = fit.table(KEY_HEADERS, rows, width)
    if text is None:  # narrower than any layout of six columns: one block per side
        text = "\n".join(
            fit.paragraph(f"{row[0]}: " + "; ".join(f"{h} {v}" for h, v in zip(KEY_HEADERS[1:], row[1:])), width)
            for row in rows
        )
    return "\n".join([text, *_key_notes(result, width)])


def _paths_by_side(result: Result) -> dict[str, list[costs.PathRow]]:
    found: dict[str, list[costs.PathRow]] = {}
    for row in costs.paths_of(result):
        if row.side != "native":
            found.setdefault(row.side, []).append(row)
    return found


def _key_notes(result: Result, width: int) -> list[str]:
    notes = ["host memory: PSS of one instance's host processes; (N) the marginal cost measured with many running"]
    kinds: dict[str, list[str]] = {}  # "path / path" -> the sides that offer those paths
    for side, rows in _paths_by_side(result).items():
        if len(rows) > 1:
            kinds.setdefault(" / ".join(row.path for row in rows), []).append(side)
    if kinds:
        said = "; ".join(f"{', '.join(sides)}: {paths}" for paths, sides in kinds.items())
        notes.append(f"x / y: the load on each path a side offers ({said})")
    if any(s.accel == "tcg" for s in result.sides.values()):
        notes.append("VMs ran under TCG (software emulation): their times, memory and load figures measure an emulator")
    if not costs.rows_of(result):
        notes.append("no standard load in this result: ops/s and host calls are not measured")
    return [fit.paragraph(n, width, indent="  - ", rest="    ") for n in notes]
