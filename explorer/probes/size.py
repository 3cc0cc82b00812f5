"""How big the workload's image is on the host, as its engine stores it."""

from __future__ import annotations

from typing import Any

from explorer.probes import ProbeContext

KEYS = (
    "image_bytes",
    "layers",
    "disk_bytes",
    "disk_file_bytes",
    "disk_virtual_bytes",
    "kernel_bytes",
    "initramfs_bytes",
    "vm_image_bytes",
)


def probe(ctx: ProbeContext) -> dict[str, Any]:
    facts = ctx.artifact.facts
    out = {key: facts[key] for key in KEYS if facts.get(key) is not None}
    out["ref"] = ctx.artifact.ref
    # One comparable figure per side: what must be on disk to start the workload.
    out["total_bytes"] = facts.get("vm_image_bytes", facts.get("image_bytes"))
    return out
