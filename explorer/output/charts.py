"""The charts of a result document, one function per chart, each drawing onto a matplotlib Axes
it is given: the PNG (--plot) stacks them in one figure, the results page draws each as an
inline SVG (explorer/output/figures.py holds their titles, sizes and method notes). Each has a
`missing_*` twin saying in one line why it has nothing to show, which both outputs print
instead of an empty panel.

matplotlib itself is never imported here at module level (it is costly to load, and only a
chart needs it): the Axes comes from the caller.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from explorer.document import side_color, side_title
from explorer.output import report
from explorer.result import DensityFigures, DensitySide, Result, SideRecord
from explorer.units import human_bytes, seconds

MIB = 1024 * 1024
TCG_CACHE = "TCG translation cache"
# One colour per host-process role, the same in every chart; a role not listed takes the next spare.
ROLE_COLORS = {
    "workload": "#4c72b0",
    "shim": "#dd8452",
    "proxy": "#937860",
    "sandbox": "#55a868",
    "gofer": "#8172b3",
    "stub": "#da8bc3",
    "VMM": "#c44e52",
    TCG_CACHE: "#c8c8c8",
}
SPARE_COLORS = ("#64b5cd", "#ccb974", "#8c8c8c", "#17becf")
NOTE_SIZE = 9  # the figures written next to bars and dots
LEGEND_DROP_PT = 34  # below the axes: its tick labels and x label (10 pt each, with their pads)


def role_color(role: str, seen: list[str]) -> str:
    if role in ROLE_COLORS:
        return ROLE_COLORS[role]
    spare = [r for r in seen if r not in ROLE_COLORS]
    index = spare.index(role) if role in spare else len(spare)
    return SPARE_COLORS[index % len(SPARE_COLORS)]


def legend_below(ax: Any, handles: list[Any], columns: int = 4) -> None:
    """A legend under the axes' tick labels and x label, whatever the axes' height (an offset in
    points, not a fraction of the axes); constrained layout makes room for it in the figure."""
    from matplotlib.transforms import offset_copy  # costly to load (matplotlib): only when a chart is drawn

    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            bbox_transform=offset_copy(ax.transAxes, fig=ax.figure, y=-LEGEND_DROP_PT, units="points"),
            ncol=min(columns, len(handles)),
            fontsize=NOTE_SIZE,
            frameon=False,
        )


def note_right(ax: Any, y: float, text: str) -> None:
    """A row's figure in a column right of the axes, level with the row: never over a bar, a
    dot or an outline, and inside the figure (constrained layout makes room for it)."""
    ax.annotate(
        text,
        (1, y),
        xycoords=ax.get_yaxis_transform(),
        xytext=(6, 0),
        textcoords="offset points",
        fontsize=NOTE_SIZE,
        va="center",
        annotation_clip=False,
    )


def log_seconds(axis: Any) -> None:
    """A log time axis in the tables' own format, minor ticks at 2 and 5 unlabelled (all eight
    crowded the decades, and cost a third of the chart's drawing)."""
    from matplotlib.ticker import LogLocator, NullFormatter  # costly to load (matplotlib), as above

    getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
    axis.set_major_formatter(lambda value, _pos: seconds(value))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(NullFormatter())


def whole_numbers() -> Any:
    from matplotlib.ticker import MaxNLocator  # costly to load (matplotlib), as above

    return MaxNLocator(integer=True)


def patch(**style: Any) -> Any:
    from matplotlib.patches import Patch  # costly to load (matplotlib): only when a chart is drawn

    return Patch(**style)


def bars_like(ax: Any, names: list[str]) -> None:
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


# ---- start to ready -----------------------------------------------------------------------


def startup_rows(result: Result) -> list[tuple[str, str, list[float], float]]:
    """(label, colour, every start's seconds, median) per side and milestone it recorded."""
    rows = []
    for name, side in result.sides.items():
        startup = side.startup
        if startup is None:
            continue
        for milestone in startup.milestones:
            key = f"{milestone}_s"
            values = [r[key] for r in startup.repeats if key in r]
            if not values:
                continue
            spread = startup.summary.get(key)
            median = spread.median if spread is not None else None
            rows.append(
                (
                    f"{side_title(side, name)} · {milestone}",
                    side_color(side),
                    values,
                    median or statistics.median(values),
                )
            )
    return rows


def missing_startup(result: Result) -> str | None:
    if startup_rows(result):
        return None
    return "no start of any side was timed in this result"


def startup(ax: Any, result: Result) -> None:
    """Every start as a dot per milestone, the median as a black tick; log time, since a
    container starts in milliseconds and a VM in seconds."""
    _dots(ax, startup_rows(result))
    ax.set_xlabel("seconds since create (log scale); dots: every start, black tick: median")


def _dots(ax: Any, rows: list[tuple[str, str, list[float], float]]) -> None:
    """One row of dots per (label, colour, values, median), a line between two sides' rows
    (the label's part before ' · '), on a log time axis."""
    previous = None
    for y, (label, color, values, median) in enumerate(rows):
        side = label.split(" · ")[0]
        if previous is not None and side != previous:
            ax.axhline(y - 0.5, color="#999999", linewidth=0.6)
        previous = side
        ax.scatter(values, [y] * len(values), color=color, alpha=0.7, s=26, zorder=3)
        ax.plot([median, median], [y - 0.34, y + 0.34], color="black", linewidth=2, zorder=4)
        note = f"{seconds(median)} (n={len(values)})"
        note_right(ax, y, note)
    bars_like(ax, [row[0] for row in rows])
    log_seconds(ax.xaxis)
    ax.grid(axis="x", which="both", alpha=0.3)


# ---- host memory --------------------------------------------------------------------------


def memory_parts(side: SideRecord) -> list[tuple[str, int]]:
    """A side's host PSS by role: its workload's own processes, each runtime role (shim,
    sandbox, gofer, stubs, VMM), and the VMM's TCG translation cache apart (an emulator's
    cost, which a KVM host does not pay)."""
    mem = side.memory
    if mem is None:
        return []
    parts = []
    workload = mem.workload.pss_bytes
    if workload:
        parts.append(("workload", workload))
    roles = mem.runtime_roles or {report.runtime_name(side): mem.runtime}
    cache = mem.tcg_cache_pss_bytes or 0
    owner = "VMM" if "VMM" in roles else max(roles, key=lambda r: roles[r].pss_bytes, default=None)
    for role, figures in roles.items():
        pss = figures.pss_bytes
        parts.append((role, max(0, pss - cache) if role == owner else pss))
    if cache:
        parts.append((TCG_CACHE, cache))
    return [(role, value) for role, value in parts if value]


def missing_memory(result: Result) -> str | None:
    if any(memory_parts(side) for side in result.sides.values()):
        return None
    return "no host memory was measured for any side in this result"


def memory(ax: Any, result: Result) -> None:
    """Host PSS per instance, stacked by role; a VM's configured memory as a dashed outline,
    the figures written right of whichever ends further."""
    names = list(result.sides)
    roles: list[str] = []
    for y, name in enumerate(names):
        side = result.sides[name]
        left = 0
        for role, value in memory_parts(side):
            if role not in roles:
                roles.append(role)
            hatch = "xx" if role == TCG_CACHE else None
            ax.barh(y, value / MIB, left=left / MIB, color=role_color(role, roles), hatch=hatch, edgecolor="white")
            left += value
        configured = side.memory.configured_bytes if side.memory is not None else None
        if configured:
            ax.barh(y, configured / MIB, fill=False, edgecolor="black", linestyle="--", linewidth=1)
        text = f"{human_bytes(left)} PSS" + (f" of {human_bytes(configured)} configured" if configured else "")
        note_right(ax, y, text)
    bars_like(ax, [side_title(result.sides[n], n) for n in names])
    ax.set_xlim(left=0)
    ax.set_xlabel("MiB of host memory per instance (PSS: shared pages divided among their users)")
    handles = [patch(facecolor=role_color(r, roles), hatch="xx" if r == TCG_CACHE else None, label=r) for r in roles]
    handles.append(patch(fill=False, edgecolor="black", linestyle="--", label="VM's configured memory"))
    legend_below(ax, handles)


# ---- what each side starts from -----------------------------------------------------------


def missing_sizes(result: Result) -> str | None:
    for side in result.sides.values():
        image = side.image
        if image is not None and any(
            v is not None for v in (image.content_bytes, image.stored_bytes, image.one_size_bytes)
        ):
            return None
    return "no image size was measured for any side in this result"


def sizes(ax: Any, result: Result) -> None:
    """Each side's content (unpacked, like for like) and what it costs stored (compressed
    layers, the qcow2 as written), side by side."""
    names = list(result.sides)
    for y, name in enumerate(names):
        side = result.sides[name]
        image, color = side.image, side_color(side)
        if image is None:
            continue
        content = image.content_bytes
        stored = image.stored_bytes if image.stored_bytes is not None else image.one_size_bytes
        for offset, value, what, style in (
            (-0.2, content, "content", {}),
            (0.2, stored, "stored", {"alpha": 0.45, "hatch": "//"}),
        ):
            if value is not None:
                ax.barh(y + offset, value / MIB, height=0.4, color=color, **style)
                note = f"{human_bytes(value)} {what}"
                note_right(ax, y + offset, note)
    bars_like(ax, [side_title(result.sides[n], n) for n in names])
    ax.set_xlim(left=0)
    ax.set_xlabel("MiB: content (unpacked, solid) and stored (compressed or as written, hatched)")


# ---- density ------------------------------------------------------------------------------


DensitySides = Mapping[str, SideRecord] | Mapping[str, DensitySide]


def density_sides(sides: DensitySides) -> list[tuple[str, str, DensityFigures]]:
    """(title, colour, density figures) of every side with measured steps: a run result's side
    carries them under `density`, a density document's side is them."""
    found = []
    for name, side in sides.items():
        d = side.density if isinstance(side, SideRecord) else side
        if d is not None and d.steps:
            found.append((side.title or name, side.color or "gray", d))
    return found


def missing_density(result: Result) -> str | None:
    if density_sides(result.sides):
        return None
    return "no density was measured in this run (explorer run --density N, or report --density FILE, adds it)"


def density_memory(ax: Any, sides: DensitySides) -> None:
    """Summed host PSS against N (dots) with its least-squares line, MemAvailable's drop (hollow)."""
    for title, color, d in density_sides(sides):
        ns = [s.n for s in d.steps]
        ax.scatter(ns, [s.pss_bytes / MIB for s in d.steps], color=color, zorder=3)
        drops = [s.available_drop_bytes / MIB for s in d.steps]
        ax.scatter(ns, drops, facecolors="none", edgecolors=color, zorder=3)
        fit = d.fits.get("pss")
        if fit:
            xs = [0, max(ns)]
            label = f"{title}: {fit.slope / MIB:.1f} MiB/instance + {fit.intercept / MIB:.0f} MiB"
            ax.plot(xs, [(fit.slope * x + fit.intercept) / MIB for x in xs], color=color, label=label)
    ax.xaxis.set_major_locator(whole_numbers())
    ax.set_xlabel("instances running (N)")
    ax.set_ylabel("MiB")
    ax.grid(alpha=0.3)
    legend_below(ax, ax.get_legend_handles_labels()[0], columns=2)


def density_ready(ax: Any, sides: DensitySides) -> None:
    """Each instance's time to ready, in the order they started."""
    for title, color, d in density_sides(sides):
        ready = [r for s in d.steps for r in s.ready_s]
        if ready:
            ax.plot(range(1, len(ready) + 1), ready, marker="o", color=color, label=title)
    ax.set_xlabel("instance number (N when it started)")
    ax.set_ylabel("seconds, create -> ready")
    log_seconds(ax.yaxis)
    ax.grid(alpha=0.3, which="both")
    legend_below(ax, ax.get_legend_handles_labels()[0], columns=3)


def density(ax: Any, result: Result) -> None:
    density_memory(ax, result.sides)


# ---- runs compared ------------------------------------------------------------------------


def compare_rows(runs: list[tuple[str, Result]]) -> list[tuple[str, str, list[float], float]]:
    """(label, colour, every start's time to ready, median) per side and run, a side's runs together."""
    names = list(dict.fromkeys(name for _, result in runs for name in result.sides))
    rows = []
    for name in names:
        for label, result in runs:
            side = result.sides.get(name)
            if side is None or side.startup is None:
                continue
            values = [r["ready_s"] for r in side.startup.repeats if "ready_s" in r]
            if values:
                rows.append(
                    (f"{side_title(side, name)} · {label}", side_color(side), values, statistics.median(values))
                )
    return rows


def missing_compare(runs: list[tuple[str, Result]]) -> str | None:
    return None if compare_rows(runs) else "no run timed a start to ready"


def compare_ready(ax: Any, runs: list[tuple[str, Result]]) -> None:
    """Every start's time to ready, per side, one row per run; log time."""
    _dots(ax, compare_rows(runs))
    ax.set_xlabel("seconds from create to ready (log scale); dots: every start, black tick: median")
