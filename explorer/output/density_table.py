"""Density results -> text: a table per side (one row per step), the fits of every side, as a
terminal table, Markdown, or the JSON document itself. Formatting only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from explorer.output.tables import table
from explorer.result import DensityFigures, DensityResult
from explorer.units import human_bytes, seconds


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def steps_table(side: DensityFigures) -> tuple[list[str], list[list[Any]]]:
    """One row per step: N, summed PSS and per instance, MemAvailable drop, the engine's growth,
    (the TCG cache), time to ready of the step's instances, the step's wall time, KSM."""
    vm = any(s.tcg_cache_pss_bytes is not None for s in side.steps)
    rows = []
    for s in side.steps:
        ready = s.ready_s
        ksm = s.ksm
        row: list[Any] = [
            s.n,
            human_bytes(s.pss_bytes),
            human_bytes(s.pss_bytes / s.n) if s.n else "-",
            human_bytes(s.available_drop_bytes),
            human_bytes(s.engine_growth_bytes),
        ]
        if vm:
            row.append(human_bytes(s.tcg_cache_pss_bytes))
        row += [
            f"{seconds(_median(ready))} ({seconds(min(ready))}-{seconds(max(ready))})" if ready else "-",
            seconds(s.step_s),
            f"{ksm.pages_sharing or 0} sharing" if ksm is not None and ksm.run == 1 else "off",
        ]
        rows.append(row)
    headers = ["N", "summed PSS", "PSS / N", "MemAvailable drop", "engine growth"]
    headers += ["TCG cache"] if vm else []
    return [*headers, "ready (median, range)", "step", "KSM"], rows


def _spread(value: int | None, residual: int | None) -> str:
    return f"{human_bytes(value)} ± {human_bytes(residual)}"


def fits_table(sides: Mapping[str, DensityFigures], titles: dict[str, str]) -> tuple[list[str], list[list[Any]]]:
    """Per side: marginal and fixed cost with the fit's residual (PSS and MemAvailable), the
    engine's growth per instance, start rate and the growth of time to ready; N says how many
    of those asked for ran, and what stopped it short."""
    rows = []
    for name, d in sides.items():
        stopped = d.stopped
        ran = f"{d.count} of {d.count_asked if d.count_asked is not None else '?'}"
        if stopped is not None and stopped.by != "count":
            ran += f" ({stopped.by})"
        title = titles.get(name, name)
        if not d.count or d.marginal_pss_bytes is None:
            rows.append([title, ran, *["-"] * 6])
            continue
        tcg = d.marginal_tcg_cache_bytes
        marginal = human_bytes(d.marginal_pss_bytes) + (f" (TCG cache {human_bytes(tcg)})" if tcg else "")
        ready = "-"
        if d.ready_first_s is not None and d.ready_last_s is not None and d.ready_slope_s is not None:
            ready = f"{seconds(d.ready_first_s)} -> {seconds(d.ready_last_s)} ({d.ready_slope_s * 1000:+.0f} ms each)"
        rows.append(
            [
                title,
                ran,
                marginal,
                _spread(d.fixed_pss_bytes, d.residual_pss_bytes),
                _spread(d.marginal_available_bytes, d.residual_available_bytes),
                human_bytes(d.marginal_engine_bytes),
                f"{d.start_rate_per_s:.2f}/s" if d.start_rate_per_s else "-",
                ready,
            ]
        )
    headers = [
        "side",
        "N",
        "PSS / instance",
        "fixed PSS ± residual",
        "MemAvailable drop",
        "engine",
        "starts",
        "ready, first -> last",
    ]
    return headers, rows


FITS_WIDTHS = [14, 10, 14, 18, 18, 10, 8, 18]


def render(doc: DensityResult, fmt: str = "table") -> str:
    if fmt == "json":
        return doc.model_dump_json(by_alias=True, indent=2) + "\n"
    host, guard = doc.host, doc.guard
    heading = (
        f"explorer density: {doc.scenario.name} on {host.hostname} "
        f"({host.cpu_cores} cores, {human_bytes(host.memory_bytes)})"
    )
    parts = [
        f"# {heading}" if fmt == "markdown" else heading,
        (
            f"memory guard: MemAvailable kept above {human_bytes(guard.floor_bytes)} "
            f"({guard.floor_fraction:.0%} of {human_bytes(guard.start_available_bytes)} at the start)"
        ),
    ]
    parts += [f"(side {name} not measured: {why})" for name, why in doc.skipped.items()]
    for name, side in doc.sides.items():
        title = (
            f"{side.title or name}: {side.count} of {side.count_asked} instances, "
            f"{side.step} per step ({side.stopped.reason if side.stopped is not None else ''})"
        )
        parts.append(f"\n## {title}\n" if fmt == "markdown" else f"\n{title}")
        parts.append(table(*steps_table(side), fmt))
    parts.append("\n## Fits (least squares against N)\n" if fmt == "markdown" else "\nFits (least squares against N)")
    titles = {name: side.title or name for name, side in doc.sides.items()}
    parts.append(table(*fits_table(doc.sides, titles), fmt, FITS_WIDTHS))
    return "\n".join(parts) + "\n"
