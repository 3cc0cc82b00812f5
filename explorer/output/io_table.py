"""The disk I/O table, read from the result document: the standard I/O load (fio's fixed job,
explorer/load/io.py) on the native process and every side, one row per side and job: IOPS,
bandwidth and completion latency, each side's storage path named, whether it ran with O_DIRECT
(and why not), and the host's system calls per I/O from the traced round. A row without
figures, and a side that ran buffered, say why in numbered notes under the table."""

from __future__ import annotations

import statistics
from typing import Any

from explorer.output import costs
from explorer.result import FioDetail, FioJob, PathLoad, Result, SideLoad, Spread, Storage

IO_HEADING = "Disk I/O (the same fio job on every side and on the native process)"
IO_WIDTHS = [13, 24, 11, 9, 13, 6, 7, 13, 8]  # within 120 columns, with the separators
JOB_TITLES = {
    "randread-4k": "4 KiB random read",
    "randwrite-4k": "4 KiB random write",
    "read-1m": "1 MiB sequential read",
    "write-1m": "1 MiB sequential write",
}


def measured(result: Result) -> bool:
    """Whether the run's standard load was the I/O load."""
    return any(load.kind == "fio" for _, _, load in costs.rows_of(result))


NOT_RECORDED = Storage(path="not recorded")


def storage_of(result: Result, name: str, load: SideLoad) -> Storage:
    """The side's storage path as it said it: its engine (Docker's, from its settings), its
    target (a VM's, from the domain XML), or the load (the native reference's directory)."""
    side = result.sides.get(name)
    if side is not None and side.engine.storage is not None:
        return side.engine.storage
    if side is not None and side.target.storage is not None:
        return side.target.storage
    return load.storage or NOT_RECORDED


def _jobs(load: PathLoad, job: str) -> list[FioJob]:
    return [r.detail.jobs[job] for r in load.rounds if isinstance(r.detail, FioDetail) and job in r.detail.jobs]


def job_spread(load: PathLoad, job: str, key: str) -> Spread | None:
    """Median, min and max of one job's figure (iops, bw_kib_s, p50_ms, p99_ms) over the measured rounds."""
    values = [float(figure) for one in _jobs(load, job) if (figure := getattr(one, key)) is not None]
    if not values:
        return None
    return Spread(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def jobs_of(load: PathLoad) -> list[str]:
    first = next(iter(load.rounds), None)
    if first is not None and isinstance(first.detail, FioDetail) and first.detail.jobs:
        return list(first.detail.jobs)
    return list(JOB_TITLES)


def _direct(load: SideLoad, note: int | None) -> str:
    if load.io is None or load.io.direct:
        return "yes"
    return f"no: buffered [{note}]" if note else "no: buffered"


def _iops(spread: Spread | None) -> str:
    if not spread:
        return "-"
    return f"{spread.median:,.0f}\n{spread.min:,.0f}-{spread.max:,.0f}"


def _mib_s(spread: Spread | None) -> str:
    """No thousands separator: tabulate's wrapping reads a lone figure as a number, and '1,317.4'
    is none (it raises)."""
    return "-" if not spread else f"{spread.median / 1024:.1f}"


def _latency(load: PathLoad, job: str) -> str:
    p50, p99 = job_spread(load, job, "p50_ms"), job_spread(load, job, "p99_ms")
    if not p50 or not p99:
        return "-"
    return f"{p50.median:.3g} / {p99.median:.3g}"


def _per_io(load: PathLoad) -> str:
    traced = costs.counted(load)
    return f"{traced.per_op:.2f}\n(all jobs)" if traced is not None and traced.per_op is not None else "-"


def _not_measured(load: PathLoad) -> str | None:
    if load.status != "ok":
        return f"{load.status}: {load.reason or 'no reason was recorded'}"
    return None


def _buffered(load: SideLoad) -> str | None:
    io = load.io
    if load.status != "ok" or io is None or io.direct:
        return None
    why = io.direct_refused
    said = f"O_DIRECT refused ({why})" if why else "O_DIRECT not asked for (direct: false)"
    return f"{said}; it ran the same jobs with {io.page_cache_effect or 'buffered I/O'}"


def notes_by_row(result: Result) -> tuple[dict[str, int], list[str]]:
    """Numbered reasons: a row without figures, a side that ran buffered ({name: number}, texts)."""
    numbers: dict[str, int] = {}
    texts: list[str] = []
    for name, title, load in costs.rows_of(result):
        reason = _not_measured(load) or _buffered(load)
        if reason:
            texts.append(f"[{len(texts) + 1}] {title}: {reason}")
            numbers[name] = len(texts)
    return numbers, texts


def _median(spread: Spread | None) -> float | None:
    return spread.median if spread is not None else None


def io_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    numbers, _ = notes_by_row(result)
    native = result.load.native if result.load is not None else None
    rows: list[list[Any]] = []
    for name, title, load in costs.rows_of(result):
        shown = title + (costs.TCG if load.note else "")
        storage = storage_of(result, name, load).path
        if _not_measured(load):
            rows.append([shown, storage, "-", f"{load.status} [{numbers[name]}]", *["-"] * 5])
            continue
        for index, job in enumerate(jobs_of(load)):
            iops = job_spread(load, job, "iops")
            base = job_spread(native, job, "iops") if native is not None and native.status == "ok" else None
            rows.append(
                [
                    shown if index == 0 else "",
                    storage if index == 0 else "",
                    JOB_TITLES.get(job, job),
                    _direct(load, numbers.get(name)) if index == 0 else "",
                    _iops(iops),
                    costs.ratio(_median(iops), _median(base)) if name != "native" else "-",
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


def io_notes(result: Result) -> list[str]:
    """How to read the table, from what this result holds; then the numbered reasons."""
    found = [load for _, _, load in costs.rows_of(result) if load.io is not None]
    if not found:
        return notes_by_row(result)[1]
    load, settings = found[0], result.load.settings if result.load is not None else None
    seconds = f"{settings.seconds_per_round:g}" if settings is not None else "?"
    rounds = settings.rounds if settings is not None else "?"
    size = load.params.get("size_mib", "?")
    out = [
        (
            f"fio's client on the host sends one job file to `fio --server` in the side, over 127.0.0.1: four jobs "
            f"one after another, each a quarter of a {seconds} s round, psync (one "
            f"system call per I/O), queue depth 1, on one {size} MiB file laid out once per side "
            f"inside it; median of {rounds} rounds, IOPS range min-max; latency is fio's completion "
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
        if storage.cache_mode_means:
            out.append(f"{title}: cache mode {storage.cache_mode}: {storage.cache_mode_means}")
        if storage.read_from:
            out.append(f"{title}: its overlay setting read from {storage.read_from}")
        if storage.detail:
            out.append(f"{title}: {storage.detail}")
    note = next((each.note for _, _, each in costs.rows_of(result) if each.note), None)
    if note:
        out.append(f"(TCG): {note}")
    return out + notes_by_row(result)[1]


def compare_rows(results: list[Result], names: list[str]) -> list[list[Any]]:
    """For `explorer compare`: each side's (and the native process's) IOPS per job, with the
    ratio to its own run's native process, one column per run."""
    rows = []
    for name in ["native", *names]:
        for job, title in JOB_TITLES.items():
            cells = [_compare_cell(result, name, job) for result in results]
            if any(cell != "-" for cell in cells):
                side = next((r.sides[name] for r in results if name in r.sides), None)
                who = costs.REFERENCE if name == "native" or side is None else side.title or name
                rows.append([f"{who}: IOPS, {title}", *cells])
    return rows


def _load_of(result: Result, name: str) -> SideLoad | None:
    if name == "native":
        return result.load.native if result.load is not None else None
    side = result.sides.get(name)
    return side.load if side is not None else None


def _compare_cell(result: Result, name: str, job: str) -> str:
    native, load = _load_of(result, "native"), _load_of(result, name)
    if load is None or load.kind != "fio" or load.status != "ok":
        return "-"
    iops = job_spread(load, job, "iops")
    if not iops:
        return "-"
    base = (
        job_spread(native, job, "iops") if name != "native" and native is not None and native.status == "ok" else None
    )
    buffered = "" if load.io is None or load.io.direct else ", buffered"
    against = f" ({costs.ratio(iops.median, base.median)} native)" if base else ""
    return f"{iops.median:,.0f}{against}{buffered}"
