"""The charts as figures: which there are, in what order, how tall, with what method note; drawn
one per figure for the results page (inline SVG) or stacked in one for the PNG (--plot). Both
take the same drawing functions (explorer/output/charts.py, cost_charts.py), so a chart is
written once. A chart with nothing to show is replaced by one line saying why, never drawn
empty. Every figure is laid out by matplotlib's constrained layout, which keeps titles, tick
labels, the figures written right of the axes and the legends below them inside it.

matplotlib is costly to load (~0.8 s here), so it is imported in the functions that
draw, never when explorer starts.
"""

from __future__ import annotations

import html
import io
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from explorer.errors import ExplorerError
from explorer.output import charts, cost_charts, inside_chart
from explorer.result import Result

WIDTH_IN = 10.0  # the page and the PNG draw at the same size
WHY_HEIGHT_IN = 0.45  # a line saying why a panel has nothing to show
WRAP = 70  # characters of that line per row: at 10 pt, centred in a panel narrowed by its neighbours' labels
STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "svg.fonttype": "path",  # text as outlines: the page needs no font, and looks as laid out
    "svg.hashsalt": "explorer",  # ids repeatable from run to run (a chart's key is added per figure)
}


Subject = TypeVar("Subject")  # what a chart draws: a result, or the runs compare draws


@dataclass(frozen=True)
class Chart(Generic[Subject]):
    key: str
    title: str
    draw: Callable[[Any, Subject], None]
    missing: Callable[[Subject], str | None]  # why it has nothing to show, or None
    rows: Callable[[Subject], int]  # bars or rows of dots, for its height
    row_in: float  # inches per row
    extra_in: float  # title, axis, legend
    method: Callable[[Subject], str]  # how to read it, for the page's <details>

    def height(self, result: Subject) -> float:
        return self.extra_in + self.row_in * max(1, self.rows(result))


def _sides(result: Result) -> int:
    return len(result.sides)


def _tcg(result: Result) -> str:
    tcg = [s.title or n for n, s in result.sides.items() if s.accel == "tcg"]
    if not tcg:
        return ""
    return f" Under TCG ({', '.join(tcg)}) a VM's figures are an emulator's, not what a KVM host shows."


def _startup_method(result: Result) -> str:
    scenario = result.scenario
    ready = scenario.ready_check or scenario.ready or "the scenario's"
    return (
        "Seconds from the engine's create call to each milestone the side's engine recorded, on the host's "
        "monotonic clock: one dot per start of the run, the black tick their median (the table 'Startup' has "
        "min, max and stdev). Log scale, since a container starts in milliseconds and a VM in seconds. The "
        "milestones differ by side, as each engine can see them (its host process, the guest kernel's first "
        "console line, the guest's init and network, a resumed snapshot, the guest agent, ssh); 'ready' is when "
        f"the readiness check ({ready}) first answered from the host." + _tcg(result)
    )


def _memory_method(result: Result) -> str:
    return (
        "Proportional set size (PSS) of each side's host processes, read from the kernel (/proc/PID/smaps via "
        "psutil) once the last start was ready, before any load: pages shared by several processes are divided "
        "among them, so the parts add up. Stacked by the role explorer gave each process (the workload's own, "
        "the shim, gVisor's sandbox, gofer and stubs, a VM's VMM). Under TCG the VMM's anonymous rwx mappings "
        "of at least 1 MiB, QEMU's translation cache, are shown apart. A VM's configured memory is the dashed "
        "outline: a guest touches only part of it." + _tcg(result)
    )


def _sizes_method(result: Result) -> str:
    return (
        "Content: what the side starts from, unpacked (an image's files; a VM's disk contents, kernel and "
        "initramfs), compared like for like. Stored: what keeping it costs (a registry's compressed layers, a "
        "qcow2 as written). A result saved before explorer measured both has one figure per side, shown as "
        "stored. The table 'Side by side' names each part."
    )


def _throughput_method(result: Result) -> str:
    load = result.load
    settings = load.settings if load is not None else None
    client = load.client if load is not None else None
    rounds = f"{settings.rounds} rounds of {settings.seconds_per_round:g} s" if settings is not None else "rounds"
    return (
        f"The same client ({client or 'the scenario’s'}) from the host against every side's workload "
        f"and against the native process (the same server from the same root filesystem, run as a plain process "
        f"in a network namespace of its own): {rounds} per side, the bar the median ops/s divided by the native "
        "median; the dashed line is 1.0, the native rate. Each row names the path the traffic took: a published "
        "port relayed by Docker's userland proxy costs throughput of its own, apart from the container. The "
        "client shares the host's CPUs with the side: read these as ratios within this run." + _tcg(result)
    )


def _syscalls_method(result: Result) -> str:
    return (
        "One more round of the same load, with the system calls of every host process of the side counted by the "
        "host's kernel (perf stat on the raw_syscalls:sys_enter tracepoint); the calls of an idle window as long "
        "are taken out at each role's own idle rate, and the rest divided by the operations the client made. "
        "What it cannot see: a VM guest's own system calls (its kernel serves them; under KVM they are VM exits, "
        "under TCG QEMU's user code), and gVisor's workload calls, which its Sentry serves." + _tcg(result)
    )


def _isolation_method(result: Result) -> str:
    return (
        "One static program (explorer-inside, built from this repository) run where each side's workload runs, "
        "by the side's own channel (docker exec, the system container's systemd, the microVM's init over its "
        "view port, the full-OS VM's guest agent), as the workload's own user and as root inside, and on the host "
        "as a plain process (the native rows). It makes escape-relevant system calls (mount, unshare, bpf, "
        "open_by_handle_at, io_uring_setup, the module calls...), each with arguments that cannot change anything "
        "or in a child that exits at once, and classifies each answer by its errno: reached (the kernel checked "
        "the arguments), blocked (EPERM/EACCES, a filter's ENOSYS), absent. Which kernel answered is the side's: "
        "the host's for a container, gVisor's Sentry, a VM's own guest kernel. The table 'The level of isolation' "
        "has every operation and fact, and the cross-check against the host-side seccomp evaluation."
    )


def _density_method(result: Result) -> str:
    return (
        "Instances of each side started step by step and kept running; after each step the host's summed PSS "
        "of every instance's processes (dots) and the drop of MemAvailable since the start (hollow), with the "
        "least-squares line of PSS against N: its slope is the marginal cost of one more instance, its intercept "
        "the fixed cost. The table 'Density' has the fits and their residuals."
    )


def _compare_method(runs: Any) -> str:
    return (
        "Each run's starts, from the engine's create call to the readiness check's first answer, one dot per "
        "start, the black tick their median, per side and run (log scale). Absolute times differ between hosts "
        "(a TCG VM ~2x between machines of one kind): compare the ratios between sides within each run."
    )


CHARTS: list[Chart[Result]] = [
    Chart(
        "startup",
        "Start to ready, milestone by milestone",
        charts.startup,
        charts.missing_startup,
        lambda r: len(charts.startup_rows(r)),
        0.24,
        1.1,
        _startup_method,
    ),
    Chart(
        "memory",
        "Host memory per instance, by role",
        charts.memory,
        charts.missing_memory,
        _sides,
        0.42,
        1.9,
        _memory_method,
    ),
    Chart("sizes", "What each side starts from", charts.sizes, charts.missing_sizes, _sides, 0.5, 1.1, _sizes_method),
    Chart(
        "throughput",
        "What isolation costs: throughput against native",
        cost_charts.throughput,
        cost_charts.missing_throughput,
        lambda r: len(cost_charts.throughput_rows(r)),
        0.5,
        1.1,
        _throughput_method,
    ),
    Chart(
        "syscalls",
        "How much of the host's kernel each side reaches",
        cost_charts.syscalls,
        cost_charts.missing_syscalls,
        lambda r: len(cost_charts.syscall_rows(r)),
        0.4,
        1.9,
        _syscalls_method,
    ),
    Chart(
        "isolation",
        "The level of isolation, from inside: who answers the workload's calls",
        inside_chart.isolation,
        inside_chart.missing_isolation,
        lambda r: len(inside_chart.isolation_rows(r)),
        0.3,
        1.9,
        _isolation_method,
    ),
    Chart(
        "density",
        "Host memory against N, many instances running",
        charts.density,
        charts.missing_density,
        lambda _result: 1,  # one plot of N, whatever the sides: its height is fixed
        0.0,
        4.8,
        _density_method,
    ),
]
COMPARE = Chart(
    "compare",
    "Start to ready, run by run",
    charts.compare_ready,
    charts.missing_compare,
    lambda runs: len(charts.compare_rows(runs)),
    0.26,
    1.1,
    _compare_method,
)


def matplotlib_rc(**changes: Any) -> Any:
    """A context in which figures are made with explorer's style (fonts are fixed when a text is
    made, the SVG's text mode when it is written: both run inside it)."""
    import matplotlib  # costly to load: only when a chart is drawn

    # matplotlib's stubs take only the literal names of rc keys; these are names too, checked when set
    return matplotlib.rc_context({**STYLE, **changes})  # type: ignore[dict-item]


def new_figure(width: float, height: float) -> Any:
    """A figure of its own (no pyplot: nothing global to close), laid out by constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # costly to load, as above
    from matplotlib.figure import Figure  # as above

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def say_why(ax: Any, title: str, why: str) -> None:
    """The one line (wrapped if long) that replaces a panel with nothing to show."""
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(why_line(title, why), WRAP), ha="center", va="center", fontsize=10)


def why_line(title: str, why: str) -> str:
    return f"{title} – nothing to show: {why}."


def draw(chart: Chart[Subject], subject: Subject, width: float = WIDTH_IN, *, titled: bool = True) -> Any:
    """`chart` alone in a figure of its own, in explorer's style (untitled: the page heads it)."""
    with matplotlib_rc():
        fig = new_figure(width, chart.height(subject))
        ax = fig.subplots()
        chart.draw(ax, subject)
        if titled:
            ax.set_title(chart.title)
    return fig


def svg(chart: Chart[Subject], subject: Subject) -> str:
    """`chart` as an inline SVG element, untitled (the page heads it): no XML prolog, no doctype,
    no metadata."""
    with matplotlib_rc(**{"svg.hashsalt": f"{STYLE['svg.hashsalt']}-{chart.key}"}):
        fig = draw(chart, subject, titled=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(chart.title)}" ', 1)


def stacked(charts_: list[Chart[Result]], result: Result, title: str) -> Any:
    """Every chart in one figure, one panel each; a panel with nothing to show is one line."""
    whys = [chart.missing(result) for chart in charts_]
    heights = [WHY_HEIGHT_IN if why else chart.height(result) for chart, why in zip(charts_, whys)]
    with matplotlib_rc():
        fig = new_figure(WIDTH_IN, sum(heights) + 0.5)
        axes = fig.subplots(len(charts_), 1, height_ratios=heights, squeeze=False)[:, 0]
        for chart, why, ax in zip(charts_, whys, axes):
            if why:
                say_why(ax, chart.title, why)
            else:
                chart.draw(ax, result)
                ax.set_title(chart.title)
        fig.suptitle(title, fontsize=13)
    return fig


def save_png(fig: Any, path: Any) -> Any:
    """Write a figure; a path that cannot be written is a clear error."""
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise ExplorerError(f"cannot write the plot to {path}: {exc.strerror}") from None
    return path
