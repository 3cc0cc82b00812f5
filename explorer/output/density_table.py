"""Density results -> text: a table per side (one row per step), the fits of every side, as a
terminal table, Markdown, or the JSON document itself. Formatting only."""

from __future__ import annotations

import json
from typing import Any

from explorer.document import side_title
from explorer.output.tables import table
from explorer.units import human_bytes, seconds


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def steps_table(side: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One row per step: N, summed PSS and per instance, MemAvailable drop, the engine's growth,
    (the TCG cache), time to ready of the step's instances, the step's wall time, KSM."""
    vm = any("tcg_cache_pss_bytes" in s for s in side.get("steps", []))
    rows = []
    for s in side.get("steps", []):
        ready = s.get("ready_s", [])
        ksm = s.get("ksm", {})
        row = [
            s["n"],
            human_bytes(s["pss_bytes"]),
            human_bytes(s["pss_bytes"] / s["n"]),
            human_bytes(s["available_drop_bytes"]),
            human_bytes(s.get("engine_growth_bytes")),
        ]
        if vm:
            row.append(human_bytes(s.get("tcg_cache_pss_bytes")))
        row += [
            f"{seconds(_median(ready))} ({seconds(min(ready))}-{seconds(max(ready))})" if ready else "-",
            seconds(s.get("step_s")),
            f"{ksm.get('pages_sharing', 0)} sharing" if ksm.get("run") == 1 else "off",
        ]
        rows.append(row)
    headers = ["N", "summed PSS", "PSS / N", "MemAvailable drop", "engine growth"]
    headers += ["TCG cache"] if vm else []
    return [*headers, "ready (median, range)", "step", "KSM"], rows


def fits_table(sides: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Per side: marginal and fixed cost with the fit's residual (PSS and MemAvailable), the
    engine's growth per instance, start rate and the growth of time to ready; N says how many
    of those asked for ran, and what stopped it short."""
    rows = []
    for name, side in sides.items():
        d = side.get("density", side)  # a run result's side carries it under `density`
        stopped = d.get("stopped", {})
        ran = f"{d.get('count', 0)} of {d.get('count_asked', '?')}"
        if stopped.get("by", "count") != "count":
            ran += f" ({stopped['by']})"
        if not d.get("count"):
            rows.append([side_title(side, name), ran, *["-"] * 6])
            continue
        tcg = d.get("marginal_tcg_cache_bytes")
        marginal = human_bytes(d["marginal_pss_bytes"]) + (f" (TCG cache {human_bytes(tcg)})" if tcg else "")
        rows.append(
            [
                side_title(side, name),
                ran,
                marginal,
                f"{human_bytes(d['fixed_pss_bytes'])} ± {human_bytes(d['residual_pss_bytes'])}",
                f"{human_bytes(d['marginal_available_bytes'])} ± {human_bytes(d['residual_available_bytes'])}",
                human_bytes(d.get("marginal_engine_bytes")),
                f"{d['start_rate_per_s']:.2f}/s" if d.get("start_rate_per_s") else "-",
                f"{seconds(d['ready_first_s'])} -> {seconds(d['ready_last_s'])} ({d['ready_slope_s'] * 1000:+.0f} ms each)",
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


def render(doc: dict[str, Any], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    host, guard = doc.get("host", {}), doc.get("guard", {})
    heading = (
        f"explorer density: {doc['scenario']['name']} on {host.get('hostname', '?')} "
        f"({host.get('cpu_cores', '?')} cores, {human_bytes(host.get('memory_bytes'))})"
    )
    parts = [
        f"# {heading}" if fmt == "markdown" else heading,
        (
            f"memory guard: MemAvailable kept above {human_bytes(guard.get('floor_bytes'))} "
            f"({guard.get('floor_fraction', 0):.0%} of {human_bytes(guard.get('start_available_bytes'))} at the start)"
        ),
    ]
    parts += [f"(side {name} not measured: {why})" for name, why in (doc.get("skipped") or {}).items()]
    for name, side in doc["sides"].items():
        title = (
            f"{side_title(side, name)}: {side.get('count', 0)} of {side.get('count_asked')} instances, "
            f"{side.get('step')} per step ({side.get('stopped', {}).get('reason', '')})"
        )
        parts.append(f"\n## {title}\n" if fmt == "markdown" else f"\n{title}")
        parts.append(table(*steps_table(side), fmt))
    parts.append("\n## Fits (least squares against N)\n" if fmt == "markdown" else "\nFits (least squares against N)")
    parts.append(table(*fits_table(doc["sides"]), fmt, FITS_WIDTHS))
    return "\n".join(parts) + "\n"
