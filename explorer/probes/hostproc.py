"""Host-side facts about one process, from psutil (and /proc where psutil has no accessor)."""

from __future__ import annotations

import os
from typing import Any

import psutil

# Capability names by bit number (linux/capability.h).
CAPABILITIES = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}


def status_fields(pid: int) -> dict[str, str]:
    """Fields of /proc/PID/status that psutil does not expose (NSpid, CapEff, Seccomp, its filters,
    TracerPid, Tgid)."""
    fields: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in {"NSpid", "CapEff", "Seccomp", "Seccomp_filters", "TracerPid", "Tgid"}:
                    fields[key] = value.strip()
    except OSError:
        pass
    return fields


def pid_inside(pid: int) -> int | None:
    """The PID the process has in its innermost PID namespace (NSpid's last entry)."""
    nspid = status_fields(pid).get("NSpid", "").split()
    return int(nspid[-1]) if nspid else None


def capabilities(mask_hex: str) -> list[str]:
    mask = int(mask_hex or "0", 16)
    return [name for bit, name in enumerate(CAPABILITIES) if mask & (1 << bit)]


def namespaces(pid: int | str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for ns in NAMESPACES:
        try:
            out[ns] = os.readlink(f"/proc/{pid}/ns/{ns}")
        except OSError:
            out[ns] = None
    return out


def memory_bytes(pid: int) -> dict[str, int]:
    """RSS, PSS and USS; PSS splits shared pages between the processes that share them."""
    info = psutil.Process(pid).memory_full_info()
    return {"rss_bytes": info.rss, "pss_bytes": info.pss, "uss_bytes": info.uss}


def describe(pid: int, stop_at: set[int] | None = None) -> dict[str, Any] | None:
    """Who a host process is: names, owner, PID inside its namespace, parent chain."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            entry: dict[str, Any] = {
                "host_pid": pid,
                "name": proc.name(),
                "cmdline": " ".join(proc.cmdline()),
                "user": proc.username(),
                "uid": proc.uids().real,
                "threads": proc.num_threads(),
                "pid_inside": pid_inside(pid),
                **memory_bytes(pid),
            }
        entry["parents"] = parent_chain(proc, stop_at or set())
    except psutil.Error:
        return None
    return entry


def parent_chain(proc: psutil.Process, stop_at: set[int]) -> list[dict[str, Any]]:
    """Parents nearest first, up to (and including) a runtime process or the host's init."""
    chain = []
    for parent in proc.parents():
        chain.append({"pid": parent.pid, "name": parent.name()})
        if parent.pid in stop_at:
            break
    return chain


def named(names: set[str]) -> list[psutil.Process]:
    """Host processes whose name is one of `names`: what `ps -e | grep NAME` would find."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in names:
            found.append(proc)
    return found
