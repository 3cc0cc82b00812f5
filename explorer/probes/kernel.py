"""Does the workload run on the host's kernel? Release and boot_id, inside against host."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import psutil

from explorer.probes import ProbeContext

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def host_kernel() -> dict[str, str]:
    return {"release": platform.release(), "boot_id": BOOT_ID.read_text().strip()}


def probe(ctx: ProbeContext) -> dict[str, Any]:
    host = host_kernel()
    out: dict[str, Any] = {"host_release": host["release"], "host_boot_id": host["boot_id"]}
    if ctx.guest is None:
        return {**out, "available": False, "reason": ctx.guest_error, "shared": None}
    guest_boot = ctx.guest.boot_id
    out.update(
        available=True,
        guest_release=ctx.guest.kernel_release,
        guest_boot_id=guest_boot,
        same_release=ctx.guest.kernel_release == host["release"],
        same_boot_id=None if guest_boot is None else guest_boot == host["boot_id"],
        guest_uptime_s=ctx.guest.uptime_s,  # by the guest kernel's own clock, when the view was taken
        host_uptime_s=round(time.time() - psutil.boot_time(), 2),
    )
    out["shared"], out["basis"] = _shared(out["same_boot_id"], out["same_release"])
    return out


def _shared(same_boot_id: bool | None, same_release: bool) -> tuple[bool | None, str | None]:
    """One kernel instance has one boot_id: equal boot_ids mean the very same running kernel.
    Where the guest has no boot_id (gVisor 20221219), a release other than the host's still
    proves another kernel; the same release without a boot_id proves nothing either way."""
    if same_boot_id is not None:
        return same_boot_id, "boot_id"
    if not same_release:
        return False, "release (no boot_id inside)"
    return None, None
