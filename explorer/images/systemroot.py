"""The system container's root filesystem: the full-OS image's own root (images/fullvm/),
as a directory, without its kernel.

The full-OS build keeps only its qcow2 (the build directory is removed), so the directory is
extracted from that disk once per full-OS image (its content hash) and cached in
~/.cache/explorer/nspawn/KEY/root: the disk converted to a raw file, mounted read-only with a
loop device inside a private mount namespace (`unshare --mount`: the mount and its
auto-clearing loop device end with that namespace, however the build ends), and copied out
with tar (owners, modes, xattrs and ACLs kept). A run never writes here: each instance gets
an overlayfs with this directory as its read-only lower layer (engines/nspawn.py).

Left out, as "the kernel": what a container cannot use, since it runs on the host's kernel:
the kernel image and initramfs under /boot (vmlinuz-*, initrd.img-*, and the root's
vmlinuz/initrd.img links to them) and the kernel's modules (/lib/modules/*, 396 MB of the 695).
The rest (config-*, System.map-*) stays: a byte-for-byte comparison of "the same root
filesystem with and without its kernel" is then the sizes' content parts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

from explorer.cache import cache_dir
from explorer.contracts import DoctorCheck, Progress, SourceDefaults
from explorer.errors import BuildError
from explorer.images.fullvm.source import FullVMDisk
from explorer.images.rootfs.dpkg_db import tree_bytes
from explorer.images.sizes import GZIP_LEVEL
from explorer.model import Artifact, owner_alive
from explorer.scenario import Scenario
from explorer.tools import run_tool

FORMAT = 1  # bump when the extraction changes: older directories are not reused
# tar --exclude patterns, relative to the image's root (/lib is a link to usr/lib in bookworm)
KERNEL_FILES = (
    "./boot/vmlinuz-*",
    "./boot/initrd.img-*",
    "./vmlinuz",
    "./vmlinuz.old",
    "./initrd.img",
    "./initrd.img.old",
    "./lib/modules/*",
    "./usr/lib/modules/*",
)
TAR_FLAGS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")
# In a mount namespace of its own: mount the raw disk read-only, copy its tree out, minus the
# kernel. Arguments: RAW MOUNTPOINT DEST EXCLUDES... (fixed text; values only as arguments)
EXTRACT = """
set -e
raw=$1 mnt=$2 dest=$3
shift 3
mount -o loop,ro "$raw" "$mnt"
tar -C "$mnt" --numeric-owner --xattrs --xattrs-include='*' --acls "$@" -cf - . |
  tar -C "$dest" --numeric-owner --xattrs --xattrs-include='*' --acls -xpf -
"""
FACTS = "facts.json"
BUILD_PREFIX = ".build-"  # .build-KEY-PID beside the finished entries


def extract_argv(raw: Path, mountpoint: Path, dest: Path) -> list[str]:
    """The extraction's argv: a private mount namespace, the fixed script, the values."""
    excludes = [f"--exclude={pattern}" for pattern in KERNEL_FILES]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        EXTRACT,
        "sh",
        str(raw),
        str(mountpoint),
        str(dest),
        *excludes,
    ]


class SystemRootfs(SourceDefaults):
    """The full-OS image's root filesystem as a directory, kernel left out (see the module)."""

    def __init__(self) -> None:
        self.fullos = FullVMDisk()

    def supports(self, scenario: Scenario) -> str | None:
        return self.fullos.supports(scenario)

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        image = self.fullos.image(scenario, progress)
        key = f"{image.facts['cache_key']}-{FORMAT}"
        final = cache_dir("nspawn") / key
        if not (final / FACTS).is_file():
            if progress:
                progress(f"extracting the full-OS root filesystem of {scenario.name} for systemd-nspawn")
            _extract(image.disk, final, key, scenario.timeouts.build_s)
        facts = json.loads((final / FACTS).read_text())
        facts.update(
            service=image.facts.get("service"),
            fullos_cache_key=image.facts["cache_key"],
            kernel_version_not_booted=image.kernel_version,
            fullos_kernel_bytes=image.facts.get("kernel_bytes"),
            fullos_initrd_bytes=image.facts.get("initrd_bytes"),
            filesystem="overlay",
        )
        paths = {"rootfs": str(final / "root")}
        return Artifact(
            ref=str(final / "root"), facts=facts, paths=paths, filesystem="overlay", service=facts["service"]
        )

    def doctor_checks(self) -> list[DoctorCheck]:
        return self.fullos.doctor_checks()


def _extract(disk: Path, final: Path, key: str, timeout: float) -> None:
    """Extract in .build-KEY-PID and rename into place: an interrupted extraction leaves
    nothing that looks complete (a dead one's directory is removed by the next)."""
    if os.geteuid() != 0:
        raise BuildError("extracting the full-OS root filesystem needs root (a loop mount)", hint="run as root")
    for stale in final.parent.glob(f"{BUILD_PREFIX}*"):
        if not owner_alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    work = final.parent / f"{BUILD_PREFIX}{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "mnt").mkdir(parents=True)
    root = work / "out" / "root"
    root.mkdir(parents=True)
    try:
        raw = work / "disk.raw"
        run_tool(
            ["qemu-img", "convert", "-q", "-O", "raw", str(disk), str(raw)], "converting the disk", timeout=timeout
        )
        run_tool(extract_argv(raw, work / "mnt", root), "copying the root filesystem out", timeout=timeout)
        raw.unlink()
        (work / "out" / FACTS).write_text(json.dumps(measure(root), indent=1, sort_keys=True) + "\n")
        try:
            os.rename(work / "out", final)
        except OSError:
            if not (final / FACTS).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(root: Path) -> dict[str, Any]:
    """Content (allocated bytes of the tree) and stored (a gzip'd tar of it, as it could be
    shipped), each with its method: the sizes probe's fields."""
    content, entries = tree_bytes(root)
    stored = gzipped_tar_bytes(root)
    kernel = "/boot's kernel and initrd, /lib/modules"
    return {
        "image_bytes": content,
        "content_bytes": content,
        "content_parts": {"root filesystem": content},
        "content_method": (
            f"allocated bytes of the full-OS image's root filesystem without its kernel ({kernel}), "
            "as the system container's read-only layer holds it"
        ),
        "stored_bytes": stored,
        "stored_parts": {"root filesystem (tar, gzip)": stored},
        "stored_method": f"the same tree as one tar, gzip-compressed (level {GZIP_LEVEL}), as it could be shipped",
        "rootfs_entries": entries,
        "kernel_left_out": list(KERNEL_FILES),
    }


def gzipped_tar_bytes(root: Path) -> int:
    """The size of `tar -C root -cf - . | gzip -6`, counted without writing it."""
    proc = subprocess.Popen(
        ["tar", "-C", str(root), *TAR_FLAGS, "-cf", "-", "."], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    total = 0
    out = proc.stdout
    assert out is not None  # stdout=PIPE
    for chunk in iter(lambda: out.read(1 << 20), b""):
        total += len(packer.compress(chunk))
    total += len(packer.flush())
    if proc.wait() != 0:
        raise BuildError(f"tar of {root} failed (exit {proc.returncode})")
    return total
