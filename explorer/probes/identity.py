"""Who the workload is on the host: its host UID, whether root inside it is the host's root, and
whether its capabilities count in the host's user namespace.

Read from /proc/PID/status (the UIDs as the host sees them, the effective capabilities) and
/proc/PID/uid_map (how the process's user namespace maps its IDs onto the host's). A process's
capabilities hold within its own user namespace: in one of its own (a user-namespaced
container) they give no power over the host, whatever it is inside. A VM's workload is no host
process at all: for a VM this is not applicable; the VMM is the hypervisor's, not the workload.
"""

from __future__ import annotations

import os
from typing import Any

import psutil

from explorer.probes import ProbeContext
from explorer.probes.hostproc import capabilities

IdMap = list[tuple[int, int, int]]  # (first ID inside, first ID outside, count)
CODE_ROLES = ("stub",)  # runtime roles whose processes execute the workload's own code
NOT_APPLICABLE = "not applicable: no host process (the workload runs in the guest; the host sees only the VMM)"


def parse_id_map(text: str) -> IdMap:
    """/proc/PID/uid_map or gid_map: one range per line, "inside outside count"."""
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3:
            ranges.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return ranges


def outside(id_map: IdMap, inside_id: int) -> int | None:
    """The host's ID for `inside_id` (None: unmapped, the kernel shows it as the overflow ID)."""
    for first_in, first_out, count in id_map:
        if first_in <= inside_id < first_in + count:
            return first_out + inside_id - first_in
    return None


def inside(id_map: IdMap, outside_id: int) -> int | None:
    """The ID inside the namespace for the host's `outside_id` (None: unmapped)."""
    for first_in, first_out, count in id_map:
        if first_out <= outside_id < first_out + count:
            return first_in + outside_id - first_out
    return None


def is_identity(id_map: IdMap) -> bool:
    """The initial user namespace's map: every ID is itself."""
    return id_map == [(0, 0, 4294967295)]


def identity(pid: int, status: dict[str, str], uid_map_text: str, own_ns: bool) -> dict[str, Any]:
    """The figures, from the texts read (pure: tested without a process)."""
    uids = [int(u) for u in status.get("Uid", "").split()] or [-1]
    host_uid = uids[1] if len(uids) > 1 else uids[0]  # effective: what the kernel checks
    id_map = parse_id_map(uid_map_text)
    root = outside(id_map, 0)
    caps = capabilities(status.get("CapEff", "0"))
    over_host = [] if own_ns else caps  # a user namespace's capabilities stop at its own edge
    return {
        "available": True,
        "host_pid": pid,
        "host_uid": host_uid,
        "uid_inside": inside(id_map, host_uid),
        "runs_as_host_root": host_uid == 0,
        "uid_map": [list(r) for r in id_map],
        "own_user_namespace": own_ns,
        "root_host_uid": root,  # None: root inside is unmapped (an overflow ID on the host)
        "root_is_host_root": root == 0,
        "capabilities": caps,
        "capabilities_over_host": over_host,
        "capability_count_over_host": len(over_host),
    }


def probe(ctx: ProbeContext) -> dict[str, Any]:
    if ctx.kind == "vm":
        return {"available": False, "reason": NOT_APPLICABLE}
    pid, subject = _subject(ctx)
    if pid is None:
        return {"available": False, "reason": "not applicable: no host process of the workload or its runtime found"}
    try:
        with open(f"/proc/{pid}/uid_map") as handle:
            uid_map = handle.read()
        with open(f"/proc/{pid}/status") as handle:
            status = dict(line.rstrip("\n").partition(":")[::2] for line in handle)
        own_ns = os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        with open("/proc/self/uid_map") as handle:
            host_ns_initial = is_identity(parse_id_map(handle.read()))
    except OSError as exc:
        return {"available": False, "reason": f"process {pid} could not be read: {exc.strerror}"}
    status = {key: value.strip() for key, value in status.items()}
    return {
        **identity(pid, status, uid_map, own_ns),
        "subject": subject,
        "host_user_namespace_initial": host_ns_initial,  # explorer itself in the machine's first one
        # the side's other processes that run as the host's root (a system container's systemd)
        "others_as_host_root": _others_as_root(ctx.workload_pids, pid),
    }


def _others_as_root(pids: list[int], subject: int) -> list[str]:
    found = []
    for pid in sorted(set(pids) - {subject}):
        try:
            process = psutil.Process(pid)
            if process.uids().effective == 0:
                found.append(f"{process.name()} ({pid})")
        except psutil.Error:
            continue
    return found


def _subject(ctx: ProbeContext) -> tuple[int | None, str]:
    """The workload's own process; where the host has none, the runtime's process that executes
    the workload's code (gVisor's stubs on the ptrace platform), else the runtime's main one."""
    if ctx.workload_pids:
        named = [pid for pid in ctx.workload_pids if _name(pid) in ctx.scenario.workload.processes]
        return min(named or ctx.workload_pids), "workload"
    for role in (*CODE_ROLES, *ctx.roles, *sorted(set(ctx.runtime_pids.values()))):
        pids = [pid for pid, r in ctx.runtime_pids.items() if r == role]
        if pids:
            return min(pids), role
    return None, ""


def _name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None
