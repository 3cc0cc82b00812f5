"""Facts about the host a run was measured on, saved with every result."""

from __future__ import annotations

import platform
import socket
from typing import Any

import psutil

from explorer import __version__
from explorer.probes.kernel import host_kernel


def cpu_model() -> str:
    """psutil has no CPU model name; /proc/cpuinfo's first 'model name' is the usual source."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
        "cpu_model": cpu_model(),
        "cpu_cores": psutil.cpu_count(logical=True),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "explorer": __version__,
    }
