"""Where a side's files live: the storage path its workload's reads and writes take to the
host's disk, as each engine can tell it from its own settings (never from a side's name).

- Docker with runc: the container's root is overlayfs (Docker's overlay2 driver), its writable
  layer a directory on the host's filesystem.
- Docker with gVisor's runsc: the Sentry reaches the container's root through the gofer;
  whether the root's writes stay in an overlay of the sandbox's own (in memory, or in a file on
  the host) or go through the gofer to Docker's overlayfs is runsc's --overlay2 setting, read
  from the runtime's arguments in dockerd's configuration, else runsc's own default.
- A libvirt VM: a virtio-blk disk on a qcow2 file, with the cache mode the domain XML sets
  (none set: the hypervisor's default), and the guest's own filesystem on it.

Each is a dict: `path`, the words the I/O table shows, and the settings it was read from.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

# libvirt's cache modes (formatdomain.html#hard-drives-floppy-disks-cdroms): what the host does
HOST_CACHE = "; a guest's O_DIRECT passes its own page cache only: its reads may come from the host's"
CACHE_MODES = {
    "default": "none set in the domain XML: QEMU's own default, writeback (the host's page cache holds the "
    "disk's data; the guest's flushes reach the disk)" + HOST_CACHE,
    "none": "the host opens the disk file with O_DIRECT: no host page cache",
    "writethrough": "the host's page cache for reads; every write synced to the disk (O_DSYNC)" + HOST_CACHE,
    "writeback": "the host's page cache for reads and writes; the guest's flushes reach the disk" + HOST_CACHE,
    "directsync": "O_DIRECT and O_DSYNC on the host: no page cache, every write synced",
    "unsafe": "the host's page cache; the guest's flushes are ignored" + HOST_CACHE,
}
BUS_DEVICES = {"virtio": "virtio-blk", "scsi": "SCSI", "sata": "SATA (AHCI)", "ide": "IDE"}


def overlay_storage(info: dict[str, Any]) -> dict[str, Any]:
    """A runc container's root, from `docker info`: its storage driver and backing filesystem."""
    driver = info.get("Driver") or "unknown"
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "unknown")
    where = info.get("DockerRootDir") or "/var/lib/docker"
    path = "overlayfs on the host's filesystem" if driver.startswith("overlay") else f"Docker's {driver} driver"
    return {
        "path": path,
        "detail": f"Docker's {driver} storage driver: the container's writable layer is a directory of the "
        f"host's {backing} filesystem under {where}",
        "driver": driver,
        "backing_filesystem": backing,
    }


def gvisor_storage(runtime_args: Sequence[str], flags_help: str | None) -> dict[str, Any]:
    """A gVisor container's root: through the gofer, with or without an overlay of its own.

    `runtime_args`: runsc's arguments in dockerd's configuration; `flags_help`: what `runsc
    flags` printed, for runsc's own default (None: it could not be run)."""
    given = None
    for arg in runtime_args:
        if arg.startswith("--overlay2="):
            given = arg.split("=", 1)[1]
        elif arg in ("--overlay", "--overlay=true"):
            given = "all:memory"
    if given is None and flags_help is None:
        return {
            "path": "through the gofer (whether its root has an overlay of its own is not known: `runsc flags` "
            "could not be run and its runtimeArgs set no --overlay2)",
            "overlay": "unknown",
            "overlay2": None,
            "read_from": None,
        }
    default = None if flags_help is None else runsc_overlay_default(flags_help)
    setting = given or default or "none"
    source = (
        f"runsc's runtimeArgs in dockerd's configuration ({' '.join(runtime_args)})"
        if given
        else "runsc's default: its runtimeArgs in dockerd's configuration set no --overlay2, and `runsc flags` "
        + (f"shows the default {default}" if default else "shows no default (off)")
    )
    mount, _, medium = setting.partition(":")
    if setting == "none" or mount not in ("root", "all"):
        overlay = "none"
        words = (
            "through the gofer, no overlay of the sandbox's own: the root's writes reach Docker's overlayfs on the host"
        )
    elif medium in ("memory", ""):
        overlay = "in memory"
        words = (
            f"through the gofer, the root's writes held in an overlay in the sandbox's memory (--overlay2={setting})"
        )
    else:
        overlay = f"on the host ({medium})"
        words = f"through the gofer, the root's writes held in an overlay whose filestore is on the host ({medium})"
    return {"path": words, "overlay": overlay, "overlay2": setting, "read_from": source}


def disk_storage(xml: str, filesystem: str | None) -> dict[str, Any]:
    """A VM's first disk, from the domain XML its engine made: bus, format, cache mode."""
    disk = ET.fromstring(xml).find("./devices/disk[@device='disk']")
    if disk is None:
        return {"path": "no disk in the domain XML", "cache_mode": None}
    driver = disk.find("driver")
    target = disk.find("target")
    source = disk.find("source")
    fmt = driver.get("type", "raw") if driver is not None else "raw"
    mode = (driver.get("cache") if driver is not None else None) or "default"
    bus = target.get("bus", "") if target is not None else ""
    device = BUS_DEVICES.get(bus, bus or "an unknown bus")
    inside = f", {filesystem} in the guest" if filesystem else ", a filesystem explorer did not make in the guest"
    return {
        "path": f"{device} on a {fmt} file, libvirt cache mode {mode}{inside}",
        "bus": bus,
        "format": fmt,
        "cache_mode": mode,
        "cache_mode_means": CACHE_MODES.get(mode, "a mode explorer does not know"),
        "guest_filesystem": filesystem,
        "file": None if source is None else source.get("file"),
    }


def runsc_overlay_default(flags_help: str) -> str | None:
    """runsc's default --overlay2, from what `runsc flags` prints (Go's flag package shows a
    default only where it is not the zero value: None, overlay off)."""
    lines = flags_help.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("-overlay2")), None)
    if start is None:
        return None
    described = [lines[start]]
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("-"):
            break
        described.append(line)
    found = re.search(r"\(default ([^)]+)\)", " ".join(described))
    return found.group(1) if found else None
