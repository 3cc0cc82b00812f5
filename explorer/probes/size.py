"""How big what the workload starts from is, measured two ways with their methods
(explorer/images/sizes.py): its content (unpacked: what it holds) and what storing or
shipping it costs (stored: compressed as a registry stores layers, or the qcow2 as written).
Sizes compare content with content; the virtual disk size is kept apart."""

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
    "content_bytes",
    "content_parts",
    "content_method",
    "stored_bytes",
    "stored_parts",
    "stored_method",
    "fs_used_bytes",
)


def probe(ctx: ProbeContext) -> dict[str, Any]:
    facts = ctx.artifact.facts
    out = {key: facts[key] for key in KEYS if facts.get(key) is not None}
    out["ref"] = ctx.artifact.ref
    # explorer 0.1's single figure, kept for older readers: the image as the engine keeps it
    out["total_bytes"] = facts.get("vm_image_bytes", facts.get("image_bytes"))
    return out
