"""`explorer doctor`: what this host can and cannot do for explorer, each with its fix."""

from __future__ import annotations

import shutil
from typing import Any

from explorer.errors import ExplorerError
from explorer.images import cache_root, check_cache

SETUP = "scripts/setup-host"
MIN_FREE_BYTES = 4 * 1024**3


def _docker() -> tuple[str, str]:
    from explorer.backends.docker import DockerBackend

    facts = DockerBackend().check()
    return "ok", f"Docker {facts['engine_version']} (API {facts['api_version']}, {facts['storage_driver']})"


def _gvisor() -> tuple[str, str]:
    from explorer.backends.gvisor import GVisorBackend

    facts = GVisorBackend().check()
    return "ok", (f"runsc {facts['runsc_version']} at {facts['runsc_path']}, {facts['runsc_platform']} platform, "
                  f"args {' '.join(facts['runsc_args']) or 'none'}")


def _libvirt() -> tuple[str, str]:
    from explorer.backends.libvirt import LibvirtBackend

    facts = LibvirtBackend().check()
    return "ok", f"libvirt {facts.get('libvirt_version')}, QEMU {facts.get('qemu_version')}"


def _kvm() -> tuple[str, str]:
    from explorer.kvm import kvm_usable

    verdict = kvm_usable()
    if verdict.usable:
        return "ok", f"KVM works ({verdict.reason})"
    return "warning", f"VMs will use TCG, software emulation ({verdict.reason})"


def _libpq() -> tuple[str, str]:
    from explorer.readiness.strategies import libpq

    version = libpq().version()  # e.g. 150018: 15.18
    return "ok", f"libpq {version // 10000}.{version % 10000} (PostgreSQL readiness: PQping)"


def _tool(name: str, package: str) -> tuple[str, str]:
    path = shutil.which(name)
    if path:
        return "ok", path
    raise ExplorerError(f"{name} not found", hint=f"apt-get install {package} (or {SETUP})")


def _cache() -> tuple[str, str]:
    return "ok", f"{check_cache()} is writable"


def _disk() -> tuple[str, str]:
    root = cache_root()
    while not root.exists() and root != root.parent:  # the filesystem it would be made on
        root = root.parent
    free = shutil.disk_usage(root).free
    detail = f"{free / 1024**3:.1f} GiB free in {root}"
    if free < MIN_FREE_BYTES:
        raise ExplorerError(detail, hint=f"free at least {MIN_FREE_BYTES // 1024**3} GiB or set EXPLORER_CACHE")
    return "ok", detail


CHECKS: list[tuple[str, bool, Any]] = [
    ("Docker engine", True, _docker),
    ("gVisor (runsc under Docker)", False, _gvisor),
    ("libvirt (qemu:///system)", True, _libvirt),
    ("KVM", False, _kvm),
    ("mmdebstrap", True, lambda: _tool("mmdebstrap", "mmdebstrap")),
    ("qemu-img", True, lambda: _tool("qemu-img", "qemu-utils")),
    ("mke2fs", True, lambda: _tool("mke2fs", "e2fsprogs")),
    ("qemu-system-x86_64", True, lambda: _tool("qemu-system-x86_64", "qemu-system-x86")),
    ("libpq", False, _libpq),
    ("cache (EXPLORER_CACHE)", True, _cache),
    ("free disk", True, _disk),
]


def diagnose() -> tuple[list[list[str]], bool]:
    """One row per check; ok is False when a required check failed."""
    rows, ok = [], True
    for name, required, check in CHECKS:
        try:
            status, detail = check()
        except ExplorerError as exc:
            status = "MISSING" if required else "warning"
            detail = f"{exc}" + (f" -> fix: {exc.hint}" if exc.hint else "")
            ok = ok and not required
        except ImportError as exc:
            status, detail = ("MISSING" if required else "warning"), f"{exc} -> fix: make venv (pip install -e .)"
            ok = ok and not required
        rows.append([name, status, detail])
    return rows, ok
