"""The disk I/O table, read from the result document: the standard I/O load (fio's fixed job,
explorer/load/io.py) on the native process and every side, one row per side and job: IOPS,
bandwidth and completion latency, each side's storage path named, whether it ran with O_DIRECT
(and why not), and the host's system calls per I/O from the traced round. A row without
figures, and a side that ran buffered, say why in numbered notes under the table."""

from __future__ import annotations

import statistics
from typing import Any

from explorer.output import costs

IO_HEADING = "Disk I/O (the same fio job on every side and on the native process)"
IO_WIDTHS = [13, 24, 11, 9, 13, 6, 7, 13, 8]  # within 120 columns, with the separators
JOB_TITLES = {
    "randread-4k": "4 KiB random read",
    "randwrite-4k": "4 KiB random write",
    "read-1m": "1 MiB sequential read",
    "write-1m": "1 MiB sequential write",
}


def measured(result: dict[str, Any]) -> bool:
    """Whether the run's standard load was the I/O load."""
    return any(load.get("kind") == "fio" for _, _, load in costs.rows_of(result))


def storage_of(result: dict[str, Any], name: str, load: dict[str, Any]) -> dict[str, Any]:
    """The side's storage path as it said it: its engine (Docker's, from its settings), its
    target (a VM's, from the domain XML), or the load (the native reference's directory)."""
    side = result.get("sides", {}).get(name) or {}
    return (
        (side.get("engine") or {}).get("storage")
        or (side.get("target") or {}).get("storage")
        or load.get("storage")
        or {"path": "not recorded"}
    )


def job_spread(load: dict[str, Any], job: str, key: str) -> dict[str, float] | None:
    """Median, min and max of one job's figure over the measured rounds."""
    values = [
        figure
        for r in load.get("rounds") or []
        if (figure := (((r.get("detail") or {}).get("jobs") or {}).get(job) or {}).get(key)) is not None
    ]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def jobs_of(load: dict[str, Any]) -> list[str]:
    first: dict[str, Any] = next(iter(load.get("rounds") or []), {})
    return list(((first.get("detail") or {}).get("jobs") or {}) or JOB_TITLES)


def _direct(load: dict[str, Any], note: int | None) -> str:
    io = load.get("io") or {}
    if io.get("direct", True):
        return "yes"
    return f"no: buffered [{note}]" if note else "no: buffered"


def _iops(spread: dict[str, float] | None) -> str:
    if not spread:
        return "-"
    return f"{spread['median']:,.0f}\n{spread['min']:,.0f}-{spread['max']:,.0f}"


def _mib_s(spread: dict[str, float] | None) -> str:
    """No thousands separator: tabulate's wrapping reads a lone figure as a number, and '1,317.4'
    is none (it raises)."""
    return "-" if not spread else f"{spread['median'] / 1024:.1f}"


def _latency(load: dict[str, Any], job: str) -> str:
    p50, p99 = job_spread(load, job, "p50_ms"), job_spread(load, job, "p99_ms")
    if not p50 or not p99:
        return "-"
    return f"{p50['median']:.3g} / {p99['median']:.3g}"


def _per_io(load: dict[str, Any]) -> str:
    traced = load.get("traced") or {}
    per_op = traced.get("per_op")
    return f"{per_op:.2f}\n(all jobs)" if traced.get("available") and per_op is not None else "-"


def _not_measured(load: dict[str, Any]) -> str | None:
    if load.get("status") != "ok":
        return f"{load.get('status', 'not measured')}: {load.get('reason', 'no reason was recorded')}"
    return None


def _buffered(load: dict[str, Any]) -> str | None:
    io = load.get("io") or {}
    if load.get("status") != "ok" or io.get("direct", True):
        return None
    why = io.get("direct_refused")
    said = f"O_DIRECT refused ({why})" if why else "O_DIRECT not asked for (direct: false)"
    return f"{said}; it ran the same jobs with {io.get('page_cache_effect') or 'buffered I/O'}"


def notes_by_row(result: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Numbered reasons: a row without figures, a side that ran buffered ({name: number}, texts)."""
    numbers: dict[str, int] = {}
    texts: list[str] = []
    for name, title, load in costs.rows_of(result):
        reason = _not_measured(load) or _buffered(load)
        if reason:
            texts.append(f"[{len(texts) + 1}] {title}: {reason}")
            numbers[name] = len(texts)
    return numbers, texts


def io_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    numbers, _ = notes_by_row(result)
    native = (result.get("load") or {}).get("native") or {}
    rows = []
    for name, title, load in costs.rows_of(result):
        shown = title + (costs.TCG if load.get("note") else "")
        storage = storage_of(result, name, load).get("path", "-")
        if _not_measured(load):
            rows.append([shown, storage, "-", f"{load.get('status', '-')} [{numbers[name]}]", *["-"] * 5])
            continue
        for index, job in enumerate(jobs_of(load)):
            iops = job_spread(load, job, "iops")
            base = job_spread(native, job, "iops") if native.get("status") == "ok" else None
            rows.append(
                [
                    shown if index == 0 else "",
                    storage if index == 0 else "",
                    JOB_TITLES.get(job, job),
                    _direct(load, numbers.get(name)) if index == 0 else "",
                    _iops(iops),
                    costs.ratio(iops["median"] if iops else None, base["median"] if base else None)
                    if name != "native"
                    else "-",
                    _mib_s(job_spread(load, job, "bw_kib_s")),
                    _latency(load, job),
                    _per_io(load) if index == 0 else "",
                ]
            )
    headers = [
        "side",
        "storage path",
        "job",
        "O_DIRECT",
        "IOPS\n(range)",
        "vs\nnative",
        "MiB/s",
        "latency ms\np50 / p99",
        "host calls\n/I/O",
    ]
    return headers, rows


def io_notes(result: dict[str, Any]) -> list[str]:
    """How to read the table, from what this result holds; then the numbered reasons."""
    found = [load for _, _, load in costs.rows_of(result) if load.get("io")]
    if not found:
        return notes_by_row(result)[1]
    load, settings = found[0], (result.get("load") or {}).get("settings") or {}
    params = load.get("params") or {}
    out = [
        (
            f"fio's client on the host sends one job file to `fio --server` in the side, over 127.0.0.1: four jobs "
            f"one after another, each a quarter of a {settings.get('seconds_per_round', '?'):g} s round, psync (one "
            f"system call per I/O), queue depth 1, on one {params.get('size_mib', '?')} MiB file laid out once per side "
            f"inside it; median of {settings.get('rounds', '?')} rounds, IOPS range min-max; latency is fio's completion "
            "latency (clat). The job file as run, and each client's argv, are in the JSON (load.io, load.argv)"
        ),
        (
            "host calls /I/O: the host system calls of the side's processes per I/O, over all four jobs' I/Os (the 4 KiB "
            "jobs' are most of them), counted in one more, traced round (see the surface table)"
        ),
        (
            "each round also pays fio's own start (while no job runs, its server looks at its socket once a second: "
            "up to 1 s before the jobs start; then each job's setup): not in the figures, which are over the jobs' own "
            "run time"
        ),
    ]
    for name, title, each in costs.rows_of(result):
        storage = storage_of(result, name, each)
        if storage.get("cache_mode_means"):
            out.append(f"{title}: cache mode {storage['cache_mode']}: {storage['cache_mode_means']}")
        if storage.get("read_from"):
            out.append(f"{title}: its overlay setting read from {storage['read_from']}")
        if storage.get("detail"):
            out.append(f"{title}: {storage['detail']}")
    note = next((each["note"] for _, _, each in costs.rows_of(result) if each.get("note")), None)
    if note:
        out.append(f"(TCG): {note}")
    return out + notes_by_row(result)[1]


def compare_rows(results: list[dict[str, Any]], names: list[str]) -> list[list[Any]]:
    """For `explorer compare`: each side's (and the native process's) IOPS per job, with the
    ratio to its own run's native process, one column per run."""
    rows = []
    for name in ["native", *names]:
        for job, title in JOB_TITLES.items():
            cells = [_compare_cell(result, name, job) for result in results]
            if any(cell != "-" for cell in cells):
                side: dict[str, Any] = next((r["sides"][name] for r in results if name in r.get("sides", {})), {})
                who = costs.REFERENCE if name == "native" else side.get("title") or name
                rows.append([f"{who}: IOPS, {title}", *cells])
    return rows


def _compare_cell(result: dict[str, Any], name: str, job: str) -> str:
    native = (result.get("load") or {}).get("native") or {}
    load = native if name == "native" else (result.get("sides", {}).get(name) or {}).get("load") or {}
    if load.get("kind") != "fio" or load.get("status") != "ok":
        return "-"
    iops = job_spread(load, job, "iops")
    if not iops:
        return "-"
    base = job_spread(native, job, "iops") if name != "native" and native.get("status") == "ok" else None
    buffered = "" if (load.get("io") or {}).get("direct", True) else ", buffered"
    against = f" ({costs.ratio(iops['median'], base['median'])} native)" if base else ""
    return f"{iops['median']:,.0f}{against}{buffered}"
