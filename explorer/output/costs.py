"""What isolation costs, read from the result document: the same standard load on the native
reference and on every side. Two tables, one row each: the cost (throughput and its ratio to
the native process and to the first container side, the client's p99, the host CPU the side's
host processes spent per 1000 operations, the client's own apart), and the host kernel's
surface the side reached under it (system calls per operation and by whom, distinct calls,
the most frequent, each role's seccomp filter as the calls it allows, and the calls the side
may reach against those it used). A row that has no figures says why in a
numbered note under the table, not in a cell."""

from __future__ import annotations

from typing import Any

from explorer.output.document import side_title

REFERENCE = "native process"
COST_HEADING = "What isolation costs (the same load on every side, from the host)"
SURFACE_HEADING = "How much of the host's kernel each side reaches (system calls the host served under the load)"
COST_WIDTHS = [16, 15, 8, 10, 10, 10, 10]
SURFACE_WIDTHS = [16, 8, 8, 18, 28, 24, 10]
TCG = " (TCG)"


def _figure(load: dict[str, Any], key: str) -> float | None:
    return ((load.get("summary") or {}).get(key) or {}).get("median")


def median(load: dict[str, Any], key: str) -> float | None:
    """The median over the measured rounds of one figure of a load (None when absent)."""
    return _figure(load, key)


def native_rate(result: dict[str, Any]) -> float | None:
    """The native reference's median ops/s, the floor every ratio is taken against."""
    return _figure((result.get("load") or {}).get("native") or {}, "ops_s")


def rows_of(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, title, load figures) of the native reference, then every side that has a load."""
    found = []
    native = (result.get("load") or {}).get("native")
    if native:
        found.append(("native", REFERENCE, native))
    for name, side in result.get("sides", {}).items():
        if side.get("load"):
            found.append((name, side_title(side, name), side["load"]))
    return found


def first_container(result: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for name, side in result.get("sides", {}).items():
        if side.get("kind") == "container" and _figure(side.get("load") or {}, "ops_s"):
            return side_title(side, name), side["load"]
    return None


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def _rate(load: dict[str, Any]) -> str:
    spread = (load.get("summary") or {}).get("ops_s")
    if not spread:
        return "-"
    return f"{spread['median']:,.0f}\n{spread['min']:,.0f}-{spread['max']:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _title(title: str, load: dict[str, Any]) -> str:
    return title + (TCG if load.get("note") else "")


def _not_measured(load: dict[str, Any]) -> str | None:
    """Why a row has no figures (None: it has them)."""
    if load.get("status") != "ok":
        return f"{load.get('status', 'not measured')}: {load.get('reason', 'no reason was recorded')}"
    return None


def _why_rows(result: dict[str, Any], why: Any) -> tuple[dict[str, int], list[str]]:
    """Numbered reasons for the rows `why` says have no figures: {name: note number}, the notes."""
    numbers: dict[str, int] = {}
    texts: list[str] = []
    for name, title, load in rows_of(result):
        reason = why(load)
        if reason:
            texts.append(f"[{len(texts) + 1}] {title}: {reason}")
            numbers[name] = len(texts)
    return numbers, texts


def costs_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    native = _figure((result.get("load") or {}).get("native") or {}, "ops_s")
    first = first_container(result)
    first_rate = _figure(first[1], "ops_s") if first else None
    numbers, _ = _why_rows(result, _not_measured)
    rows = []
    for name, title, load in rows_of(result):
        if name in numbers:
            rows.append([_title(title, load), f"{load.get('status', '-')} [{numbers[name]}]", *["-"] * 5])
            continue
        rate = _figure(load, "ops_s")
        p99 = _figure(load, "p99_ms")
        latency = _ms(p99) if p99 is not None else f"avg {_ms(_figure(load, 'latency_avg_ms'))}"
        rows.append(
            [
                _title(title, load),
                _rate(load),
                ratio(rate, native),
                ratio(rate, first_rate) if name != "native" else "-",
                latency,
                _cpu(_figure(load, "host_cpu_s_per_1k_ops")),
                _cpu(_figure(load, "client_cpu_s")),
            ]
        )
    headers = [
        "side",
        "ops/s\n(range)",
        "vs\nnative",
        "vs first\ncontainer",
        "p99",
        "host CPU\n/1k ops",
        "client CPU\n/round",
    ]
    return headers, rows


def _surface_missing(load: dict[str, Any]) -> str | None:
    missing = _not_measured(load)
    if missing:
        return missing
    traced = load.get("traced") or {}
    if not traced.get("available"):
        return f"not measured: {traced.get('reason', 'no counted round')}"
    return None


def _roles(traced: dict[str, Any]) -> str:
    """Whose calls reach the host, per operation, busiest first (roles that made none left out)."""
    roles = sorted(
        ((role, r) for role, r in (traced.get("by_role") or {}).items() if r.get("calls")),
        key=lambda item: -(item[1].get("per_op") or 0),
    )
    parts = []
    for role, r in roles:
        per_op = r.get("per_op")
        exits = f", {r['kvm_exits']:,} VM exits" if r.get("kvm_exits") is not None else ""
        parts.append(f"{role} {per_op:.2f}{exits}" if per_op is not None else role)
    return "\n".join(parts) or "-"


def _seccomp(load: dict[str, Any]) -> str:
    """Each role's seccomp: the calls its filters allow (+ for some arguments only) where they
    were read; a document without them (an older explorer's) gives the mode and filter count."""
    roles = (load.get("seccomp") or {}).get("by_role")
    if roles:
        return "\n".join(f"{role}: {_allowed(figures)}" for role, figures in roles.items())
    seen: dict[str, str] = {}
    for proc in load["traced"].get("processes", []):
        mode = proc.get("seccomp", "unknown")
        filters = proc.get("seccomp_filters")
        seen.setdefault(proc.get("role", "?"), f"{mode} ({filters})" if mode == "filter" and filters else mode)
    return "\n".join(f"{role}: {mode}" for role, mode in seen.items()) or "-"


def _allowed(figures: dict[str, Any]) -> str:
    """`no filter`, `strict, 4`, `filter, 301 +7`; `>=` where some of the role's processes were not read."""
    if figures.get("allowed") is None:
        return f"{figures.get('mode') or 'unknown'}, not read"
    if figures.get("mode") == "disabled":
        return "no filter"
    at_least = "" if figures.get("read") else ">="
    extra = f" +{figures['conditional']}" if figures.get("conditional") else ""
    return f"{figures['mode']}, {at_least}{figures['allowed']}{extra}"


def _reach(load: dict[str, Any]) -> str:
    """What the side may reach (its roles' union) against what it used."""
    reach = (load.get("seccomp") or {}).get("reach")
    if not reach or reach.get("allowed") is None:
        return "-" if not reach else "not read"
    at_least = "" if reach.get("read") else ">="
    extra = f" +{reach['conditional']}" if reach.get("conditional") else ""
    used = reach.get("used")
    return f"{at_least}{reach['allowed']}{extra}" + ("" if used is None else f"\nused {used}")


def surface_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    numbers, _ = _why_rows(result, _surface_missing)
    rows = []
    for name, title, load in rows_of(result):
        if name in numbers:
            rows.append([_title(title, load), f"- [{numbers[name]}]", "-", "-", "-", "-", "-"])
            continue
        traced = load["traced"]
        top = ", ".join(f"{call} {count / traced['ops']:.2f}" for call, count in list(traced["syscalls"].items())[:4])
        per_op = traced.get("per_op")
        rows.append(
            [
                _title(title, load),
                "-" if per_op is None else f"{per_op:.2f}",
                str(traced["distinct"]),
                _roles(traced),
                top,
                _seccomp(load),
                _reach(load),
            ]
        )
    headers = [
        "side",
        "host calls\n/op",
        "distinct\ncalls",
        "by whom (calls/op)",
        "most frequent (calls/op)",
        "seccomp by role\n(calls allowed\n+ for some args)",
        "may reach\n/ used",
    ]
    return headers, rows


def cost_notes(result: dict[str, Any]) -> list[str]:
    """How to read the cost table, from what this result holds, then why a row has no figures."""
    load = result.get("load") or {}
    if not load:
        return []
    settings = load["settings"]
    out = [
        (
            f"client: {load.get('client')}; {settings['rounds']} rounds of {settings['seconds_per_round']:g} s per "
            "side (median and range), from the host against the side's 127.0.0.1 port"
        ),
        "the client runs on the same host and competes for its CPU: its own CPU is shown apart",
    ]
    note = next(
        (s["load"]["note"] for s in result.get("sides", {}).values() if (s.get("load") or {}).get("note")), None
    )
    if note:
        out.append(f"(TCG): {note}")
    if any(_roles_of(s).get("proxy") for s in result.get("sides", {}).values()):
        out.append("a container's published port goes through Docker's userland proxy (role proxy), counted with it")
    return out + _why_rows(result, _not_measured)[1]


def surface_notes(result: dict[str, Any]) -> list[str]:
    load = result.get("load") or {}
    if not load:
        return []
    traced = next(
        (r[2]["traced"] for r in rows_of(result) if (r[2].get("traced") or {}).get("available")),
        None,
    )
    out = []
    if traced:
        out.append(
            f"counted by the host's kernel in one more round of the same load (not a measured one: counting slows it): "
            f"{traced['method']}; the idle calls of the window around the client's run are taken out at each role's "
            "own idle rate"
        )
    out.append(
        "what it cannot see: a VM guest's own system calls are served by the guest's kernel (under TCG its work is "
        "QEMU's user code, under KVM VM exits, which are no system calls); gVisor's workload calls are caught by the "
        "Sentry (ptrace platform) before the host's kernel serves them, so its stubs show next to none"
    )
    return out + _filter_notes(result) + _why_rows(result, _surface_missing)[1]


def _filter_notes(result: dict[str, Any]) -> list[str]:
    """How to read the two seccomp columns, from what this result holds, then what was not read and why."""
    read = [
        (title, load["seccomp"]) for _, title, load in rows_of(result) if (load.get("seccomp") or {}).get("available")
    ]
    out = _filter_legend(read) if read else []
    for _, title, load in rows_of(result):
        found = load.get("seccomp") or {}
        if found and not found.get("available"):
            out.append(f"{title}: seccomp not read: {found.get('reason')}")
        out += [
            f"{title}, {role}: {f['reason']}" for role, f in (found.get("by_role") or {}).items() if f.get("reason")
        ]
    return out


def _filter_legend(read: list[tuple[str, dict[str, Any]]]) -> list[str]:
    first = read[0][1]
    whose = "; ".join(f"{title}: {', '.join(found['reach']['roles']) or 'none found'}" for title, found in read)
    by_role = (
        f"seccomp by role: the calls each role's filters allow outright, + those they allow for some arguments only, "
        f"of the {first['calls']} {first['arch']} system calls libseccomp names; no filter allows all of them "
        f"({first['method']})"
    )
    reach = (
        "may reach / used: the union of what those filters allow over the roles whose calls the host's kernel serves "
        f"for the workload ({whose}), against the distinct calls those roles made in the counted round; >= where a "
        "process could not be read (the figure is over those read)"
    )
    caveat = (
        "fewer calls allowed is not less of the kernel reached: one allowed call (an ioctl on a device, bpf) can "
        "reach more kernel code than many others (Anjali et al., VEE 2020)"
    )
    return [by_role, reach, caveat]


def _roles_of(side: dict[str, Any]) -> dict[str, Any]:
    return ((side.get("load") or {}).get("traced") or {}).get("by_role") or {}
