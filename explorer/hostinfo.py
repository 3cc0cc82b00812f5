"""Facts about the host a run was measured on, saved with every result."""

from __future__ import annotations

import platform
import socket
from typing import Any

import psutil

from explorer import __version__
from explorer.probes.kernel import host_kernel


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and whether its flags say the host is itself a VM (most CI runners
    are: their VMs run nested). psutil has neither; /proc/cpuinfo's first entry is the source."""
    fields: dict[str, Any] = {"cpu_model": None, "virtualized": None}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    fields["cpu_model"] = value.strip()
                elif key.strip() == "flags":
                    fields["virtualized"] = "hypervisor" in value.split()
                    break
    except OSError:
        pass
    # platform.processor() runs `uname -p`: only when /proc/cpuinfo names no model.
    fields["cpu_model"] = fields["cpu_model"] or platform.processor() or "unknown"
    return fields


def host_facts() -> dict[str, Any]:
    kernel = host_kernel()
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        os_name = platform.system()
    return {
        "hostname": socket.gethostname(),
        "os": os_name,
        "kernel_release": kernel["release"],
        "boot_id": kernel["boot_id"],
        "arch": platform.machine(),
        **cpu_info(),
        "cpu_cores": psutil.cpu_count(logical=True),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "explorer": __version__,
    }
