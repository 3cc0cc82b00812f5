"""Results -> text: terminal tables, Markdown (a CI job summary) or JSON. Formatting only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tabulate import tabulate

FORMATS = ("table", "markdown", "json")
SIDE_TITLES = {"container": "container", "vm": "VM"}


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _engine(side: dict[str, Any]) -> str:
    e = side.get("engine", {})
    if side.get("backend") == "docker":
        return f"Docker {e.get('engine_version', '?')} ({e.get('default_runtime', '?')})"
    accel = str(side.get("accel", "?")).upper()
    return f"libvirt {e.get('libvirt_version', '?')}, QEMU {e.get('qemu_version', '?')}, {accel}"


def _image(side: dict[str, Any]) -> str:
    img = side.get("image", {})
    if "vm_image_bytes" in img:
        return (
            f"{human_bytes(img['vm_image_bytes'])} (disk {human_bytes(img.get('disk_bytes'))} of "
            f"{human_bytes(img.get('disk_virtual_bytes'))} virtual, kernel "
            f"{human_bytes(img.get('kernel_bytes'))}, initramfs {human_bytes(img.get('initramfs_bytes'))})"
        )
    return human_bytes(img.get("image_bytes"))


def _visible(side: dict[str, Any]) -> str:
    vis = side.get("visibility", {})
    if vis.get("names_unconfirmed"):
        return f"unknown ({vis['names_unconfirmed']})"
    workload = [p for p in vis.get("workload_processes", []) if p["name"] in vis.get("process_names", [])]
    if workload:
        shown = ", ".join(f"{p['name']} {p['host_pid']} (pid {p['pid_inside']} inside)" for p in workload[:3])
        more = f" +{len(workload) - 3} more" if len(workload) > 3 else ""
        return f"yes: {shown}{more}"
    runtime = ", ".join(f"{p['name']} {p['host_pid']}" for p in vis.get("runtime_processes", []))
    return f"no; host sees only {runtime or 'nothing'}"


def _kernel(side: dict[str, Any]) -> str:
    k = side.get("kernel", {})
    if not k.get("available"):
        return f"unknown ({k.get('reason', 'no guest view')})"
    whose = "the host's" if k.get("shared") else "its own"
    return f"{k['guest_release']}, {whose} (boot_id {'=' if k.get('same_boot_id') else '!='} host)"


def _inside(side: dict[str, Any]) -> str:
    inside = side.get("visibility", {}).get("inside", {})
    if not inside.get("available"):
        return "unknown"
    text = (f"{plural(inside['user_process_count'], 'user process', 'user processes')}, "
            f"{plural(inside['kernel_thread_count'], 'kernel thread', 'kernel threads')}")
    ours = len(inside.get("explorer_pids_inside", []))
    return f"{text} (+{ours} of explorer's: init, watcher)" if ours else text


def _startup(side: dict[str, Any]) -> str:
    summary = side.get("startup", {}).get("summary", {}).get("ready_s")
    if not summary:
        return "-"
    return (f"{seconds(summary['median'])} median ({seconds(summary['min'])}-{seconds(summary['max'])}, "
            f"n={summary['n']})")


def runtime_name(side: dict[str, Any]) -> str:
    """What runs a side's workload on the host: a container's shim, a VM's VMM."""
    return "shim" if side.get("backend") == "docker" else "VMM"


def _memory(side: dict[str, Any]) -> str:
    mem = side.get("memory", {})
    w, r = mem.get("workload", {}), mem.get("runtime", {})
    shown = f"{human_bytes(w.get('pss_bytes'))} PSS" if w.get("processes") else "none on the host"
    text = f"workload {shown}; {runtime_name(side)} {human_bytes(r.get('pss_bytes'))} PSS"
    if "configured_bytes" in mem:
        text += f" (configured {human_bytes(mem['configured_bytes'])})"
    return text


def _isolation(side: dict[str, Any]) -> str:
    iso = side.get("isolation", {})
    if not iso.get("available"):
        return "-"
    ns = ",".join(iso["namespaces_differing"]) or "none"
    return f"{iso['subject']}: own ns {ns}; {iso['capability_count']} caps; seccomp {iso['seccomp']}"


SUMMARY_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("runs on", _engine),
    ("image on disk", _image),
    ("workload in host's ps -e", _visible),
    ("kernel", _kernel),
    ("processes inside", _inside),
    ("start to ready", _startup),
    ("memory on host", _memory),
    ("isolation", _isolation),
]


def summary_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sides = result["sides"]
    headers = ["", *(SIDE_TITLES.get(s, s) for s in sides)]
    rows = [[label, *(fn(sides[s]) for s in sides)] for label, fn in SUMMARY_ROWS]
    return headers, rows


def process_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for side_name, side in result["sides"].items():
        vis = side.get("visibility", {})
        for kind, procs in (("workload", vis.get("workload_processes", [])), ("runtime", vis.get("runtime_processes", []))):
            for p in procs:
                chain = " <- ".join(f"{q['name']}({q['pid']})" for q in p.get("parents", []))
                rows.append([SIDE_TITLES.get(side_name, side_name), kind, p["host_pid"], p.get("pid_inside"),
                             p["name"], f"{p.get('uid')} ({p.get('user')})", human_bytes(p.get("rss_bytes")),
                             human_bytes(p.get("pss_bytes")), chain or "-"])
    headers = ["side", "role", "host PID", "PID inside", "name", "uid (host name)", "RSS", "PSS", "parents"]
    return headers, rows


def startup_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for side_name, side in result["sides"].items():
        for milestone, s in side.get("startup", {}).get("summary", {}).items():
            rows.append([SIDE_TITLES.get(side_name, side_name), milestone.removesuffix("_s"), seconds(s["min"]),
                         seconds(s["median"]), seconds(s["max"]), seconds(s["stdev"]), s["n"]])
    return ["side", "milestone (since create)", "min", "median", "max", "stdev", "n"], rows


CLAIMS_WIDTHS = [22, 14, 32, 50]  # terminal tables wrap long cells; Markdown cells cannot


def claims_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The verdicts explorer.claims computed; their evidence uses this module's formats."""
    rows = [[f"{i}. {c['claim']}", c["verdict"], c["rule"], c["evidence"]]
            for i, c in enumerate(result.get("claims", []), 1)]
    return ["claim", "verdict", "rule", "evidence"], rows


def sections(result: dict[str, Any]) -> list[tuple[str, tuple[list[str], list[list[Any]]], list[int] | None]]:
    """(heading, (headers, rows), column widths a terminal table wraps to, if any)."""
    out = [
        ("Side by side", summary_table(result), None),
        ("Processes seen from the host", process_table(result), None),
        ("Startup", startup_table(result), None),
    ]
    if result.get("claims"):
        out.append(("Claims", claims_table(result), CLAIMS_WIDTHS))
    return out


def title(result: dict[str, Any]) -> str:
    host = result["host"]
    return (f"explorer: {result['scenario']['name']} on {host['hostname']} "
            f"({host['kernel_release']}, {host['cpu_cores']} cores)")


def table(headers: list[str], rows: list[list[Any]], fmt: str, widths: list[int] | None = None) -> str:
    """tabulate's simple layout for a terminal, wrapping cells to `widths`; GitHub's for
    Markdown, whose cells cannot wrap and where a bare | ("ps -e | grep") would split one."""
    if fmt == "markdown":
        rows = [[cell.replace("|", "\\|") if isinstance(cell, str) else cell for cell in row] for row in rows]
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True, maxcolwidths=widths)


def render(result: dict[str, Any], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=False)
    parts = [f"# {title(result)}" if fmt == "markdown" else title(result)]
    for heading, (headers, rows), widths in sections(result):
        parts.append(f"\n## {heading}\n" if fmt == "markdown" else f"\n{heading}")
        parts.append(table(headers, rows, fmt, widths))
    return "\n".join(parts) + "\n"
