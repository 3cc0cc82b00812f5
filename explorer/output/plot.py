"""--plot: one PNG with the startup of each side per repeat, and the host memory of each side.

matplotlib is an optional extra (pip install 'explorer[plot]'): imported only here and only
when a plot is asked for, so that the rest of explorer runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.errors import ExplorerError, UsageError
from explorer.output import costs, report
from explorer.output.document import side_color, side_title
from explorer.units import human_bytes, seconds

MIB = 1024 * 1024


def require() -> None:
    """Fail before measuring, not after, when a plot was asked for and cannot be drawn."""
    try:
        import matplotlib  # noqa: F401 - optional dependency (explorer[plot]), imported when asked for
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed",
            hint="pip install 'explorer[plot]' (in a checkout: .venv/bin/pip install matplotlib)",
        ) from None


def write(result: dict[str, Any], path: str | Path) -> Path:
    require()
    import matplotlib  # optional dependency (explorer[plot]): only when a plot is asked for

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt  # optional dependency, as above

    panels = [_startup, _memory, _sizes] + ([_costs] if costs.rows_of(result) else [])
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 3.5 * len(panels) + 1), gridspec_kw={"height_ratios": [3, 2, 2, 2][: len(panels)]}
    )
    for panel, ax in zip(panels, axes):
        panel(ax, result)
    fig.suptitle(report.title(result))
    return save(fig, path)


def save(fig: Any, path: str | Path) -> Path:
    """Lay out, write and close a figure; a path that cannot be written is a clear error."""
    import matplotlib.pyplot as plt  # optional dependency (explorer[plot]): only when a plot is asked for

    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise ExplorerError(f"cannot write the plot to {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return Path(path)


def _startup(ax: Any, result: dict[str, Any]) -> None:
    """Every repeat as a dot per milestone, the median as a bar; log time, since a container
    starts in milliseconds and a VM in seconds."""
    labels: list[str] = []
    for side, data in result["sides"].items():
        startup = data.get("startup", {})
        for milestone in startup.get("milestones", []):
            values = [r[f"{milestone}_s"] for r in startup.get("repeats", []) if f"{milestone}_s" in r]
            if not values:
                continue
            y = len(labels)
            labels.append(f"{side_title(data, side)}: {milestone}")
            ax.scatter(values, [y] * len(values), color=side_color(data), alpha=0.6, s=30, zorder=3)
            median = startup.get("summary", {}).get(f"{milestone}_s", {}).get("median")
            if median is not None:
                ax.plot([median, median], [y - 0.3, y + 0.3], color="black", linewidth=2, zorder=4)
                ax.annotate(
                    seconds(median),
                    (median, y),
                    xytext=(8, 0),
                    textcoords="offset points",
                    fontsize=8,
                    ha="left",
                    va="center",
                )
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda value, _pos: seconds(value))  # the tables' own format
    ax.xaxis.set_minor_formatter(lambda value, _pos: "")  # minor ticks unlabelled: they crowded the decades
    ax.set_xlabel("seconds since create (log scale); dots: repeats, bar: median")
    ax.set_title("Startup milestones per repeat")
    ax.grid(axis="x", which="both", alpha=0.3)


def _sizes(ax: Any, result: dict[str, Any]) -> None:
    """What each side starts from: its content (unpacked, compared like for like) and what it
    costs stored (compressed layers, the qcow2 as written), side by side."""
    names = list(result["sides"])
    for y, name in enumerate(names):
        side = result["sides"][name]
        image, color = side.get("image", {}), side_color(side)
        content = image.get("content_bytes")
        stored = image.get("stored_bytes", image.get("one_size_bytes"))
        if content is not None:
            ax.barh(y - 0.2, content / MIB, height=0.4, color=color)
            ax.annotate(f" {human_bytes(content)} content", (content / MIB, y - 0.2), va="center", fontsize=8)
        if stored is not None:
            ax.barh(y + 0.2, stored / MIB, height=0.4, color=color, alpha=0.45, hatch="//")
            ax.annotate(f" {human_bytes(stored)} stored", (stored / MIB, y + 0.2), va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [side_title(result["sides"][n], n) for n in names])
    ax.invert_yaxis()
    ax.margins(x=0.3)
    ax.set_xlabel("MiB: content (unpacked, solid) and stored (compressed or as written, hatched)")
    ax.set_title("What each side starts from")
    ax.grid(axis="x", alpha=0.3)


def _costs(ax: Any, result: dict[str, Any]) -> None:
    """The same load on every path of every side: its throughput against the native process,
    and the host system calls per operation, as the cost table has them (TCG sides hatched)."""
    rows = [row for row in costs.paths_of(result) if row.ratio is not None]
    for y, row in enumerate(rows):
        side = result["sides"].get(row.side, {})
        color = side_color(side) if row.side != "native" else "black"
        tcg = row.title.endswith(costs.TCG)
        ax.barh(y, row.ratio, color=color, alpha=0.8 if not row.relay else 0.5, hatch="//" if tcg else None)
        per_op = (row.load.get("traced") or {}).get("per_op")
        calls = f", {per_op:.1f} host calls/op" if per_op is not None else ""
        ax.annotate(f" {row.ratio:.2f}x ({row.ops_s:,.0f} ops/s{calls})", (row.ratio, y), va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{row.title}: {row.path}" for row in rows])
    ax.invert_yaxis()
    ax.margins(x=0.45)
    ax.set_xlabel("throughput against the native process (paler: a relayed path; hatched: TCG, an emulator)")
    ax.set_title("What isolation costs, path by path")
    ax.grid(axis="x", alpha=0.3)


def _memory(ax: Any, result: dict[str, Any]) -> None:
    """Host PSS per side: the workload's own processes and the shim or VMM, stacked; a VM's
    configured memory as an outline."""
    names = list(result["sides"])
    for y, side in enumerate(names):
        data = result["sides"][side]
        title, color = side_title(data, side), side_color(data)
        mem = data.get("memory", {})
        workload = mem.get("workload", {}).get("pss_bytes", 0)
        runtime = mem.get("runtime", {}).get("pss_bytes", 0)
        if workload:  # a VM's workload has no host process: nothing to draw
            ax.barh(y, workload / MIB, color=color, label=f"{title} workload")
        ax.barh(
            y, runtime / MIB, left=workload / MIB, color=color, alpha=0.45, label=f"{title} {report.runtime_name(data)}"
        )
        if mem.get("configured_bytes"):
            ax.barh(
                y,
                mem["configured_bytes"] / MIB,
                fill=False,
                edgecolor="black",
                linestyle="--",
                label=f"{title} configured",
            )
        total = workload + runtime
        text = f" {human_bytes(total)} PSS"
        if mem.get("configured_bytes"):
            text += f" of {human_bytes(mem['configured_bytes'])} configured"
        ax.annotate(text, (total / MIB, y), va="center", fontsize=9)
    ax.set_yticks(range(len(names)), [side_title(result["sides"][s], s) for s in names])
    ax.invert_yaxis()
    ax.margins(x=0.3)  # room for the labels right of the bars
    ax.set_xlabel("MiB of host memory (PSS)")
    ax.set_title("Host memory per instance")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="x", alpha=0.3)
