"""Every chart, on a result without a load and on a six-side result, drawn as the page and the
PNG draw it: no exception, every text and legend inside the figure and none over another, and
a chart with nothing to show replaced by the line that says why, never an empty panel."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from explorer.output import charts, figures, plot
from tests.unit.documents import DOCUMENTS, document, six_sides, typed

matplotlib = pytest.importorskip("matplotlib")
TOLERANCE_PX = 1.0


def _texts(fig: Any) -> list[tuple[str, Any]]:
    """(text, its box in pixels) of every text the figure shows, as laid out and drawn."""
    from matplotlib.text import Text

    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    unshown = set()  # tick labels matplotlib keeps for ticks outside the view, and does not draw
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    unshown |= {id(tick.label1), id(tick.label2)}
    return [
        (text.get_text(), text.get_window_extent(renderer))
        for text in fig.findobj(Text)
        if text.get_visible() and text.get_text().strip() and id(text) not in unshown
    ]


def assert_laid_out(fig: Any) -> None:
    """Every text and legend inside the figure; no two texts over each other, and no figure
    written over a bar, a dot or an outline."""
    bounds = fig.bbox
    texts = _texts(fig)
    assert texts, "nothing was drawn"
    outside = [
        text
        for text, box in texts
        if box.x0 < bounds.x0 - TOLERANCE_PX
        or box.y0 < bounds.y0 - TOLERANCE_PX
        or box.x1 > bounds.x1 + TOLERANCE_PX
        or box.y1 > bounds.y1 + TOLERANCE_PX
    ]
    assert outside == [], f"texts cut off at the figure's edge: {outside}"
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            assert bounds.x0 <= box.x0 and box.x1 <= bounds.x1 + TOLERANCE_PX, "legend outside the figure (width)"
            assert bounds.y0 - TOLERANCE_PX <= box.y0 and box.y1 <= bounds.y1, "legend outside the figure (height)"
    for ax in fig.axes:  # the figures beside bars and dots: in a column right of the axes, over none of them
        inside = [t.get_text() for t in ax.texts if ax.axison and t.get_window_extent(renderer).x0 < ax.bbox.x1]
        assert inside == [], f"figures written over the plot area: {inside}"
    overlapping = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(texts, 2)
        if box_a.x0 < box_b.x1 - TOLERANCE_PX
        and box_b.x0 < box_a.x1 - TOLERANCE_PX
        and box_a.y0 < box_b.y1 - TOLERANCE_PX
        and box_b.y0 < box_a.y1 - TOLERANCE_PX
    ]
    assert overlapping == [], f"texts drawn over each other: {overlapping[:5]}"


@pytest.mark.parametrize("name", DOCUMENTS)
@pytest.mark.parametrize("chart", figures.CHARTS, ids=lambda chart: chart.key)
def test_every_chart_is_drawn_whole_or_says_why_not(chart: figures.Chart, name: str):
    result = typed(document(name))
    why = chart.missing(result)
    if why:
        assert why.strip() and "\n" not in why, "the reason is one line"
        return
    for titled in (True, False):  # as the PNG draws it, and the page
        fig = figures.draw(chart, result, titled=titled)
        assert_laid_out(fig)
        assert fig.axes[0].has_data()


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_png_stacks_every_chart_with_one_line_for_each_empty_one(name: str, tmp_path: Path):
    result = typed(document(name))
    fig = figures.stacked(figures.CHARTS, result, "title")
    assert_laid_out(fig)
    for chart, ax in zip(figures.CHARTS, fig.axes):
        why = chart.missing(result)
        if why:  # the line instead of an empty panel with a meaningless axis
            assert not ax.axison and [t.get_text() for t in ax.texts] == [
                figures.textwrap.fill(figures.why_line(chart.title, why), figures.WRAP)
            ]
        else:
            assert ax.axison and ax.has_data()
    png = plot.write(typed(document(name)), tmp_path / "plot.png")
    assert png.stat().st_size > 10_000


def test_a_result_without_a_load_says_why_its_cost_charts_are_empty():
    result = typed(document("both.json"))
    throughput = next(c for c in figures.CHARTS if c.key == "throughput")
    assert "no load was run" in throughput.missing(result)
    skipped = typed(document("no standard load (built)"))
    assert "names no standard load" in throughput.missing(skipped)


def test_a_side_without_load_figures_keeps_its_row_with_the_reason():
    result = typed(six_sides())
    fig = figures.draw(next(c for c in figures.CHARTS if c.key == "throughput"), result)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert "failed: the workload died under load" in notes
    assert any(note.startswith("1.00x") for note in notes)


def test_memory_is_stacked_by_role_with_the_tcg_cache_apart():
    fig = figures.draw(next(c for c in figures.CHARTS if c.key == "memory"), typed(six_sides()))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:2] == ["workload", "shim"]
    assert {"sandbox", "gofer", "stub", "VMM", "TCG translation cache", "VM's configured memory"} <= set(legend)


def test_the_density_charts_are_laid_out():
    result = typed(six_sides())
    with figures.matplotlib_rc():
        fig = figures.new_figure(figures.WIDTH_IN, 10)
        memory_ax, ready_ax = fig.subplots(2, 1, height_ratios=[3, 2])
        charts.density_memory(memory_ax, result.sides)
        charts.density_ready(ready_ax, result.sides)
    assert_laid_out(fig)
    assert memory_ax.has_data() and ready_ax.has_data()
