"""What every VM side's source shares: the ext4 filesystem explorer makes from a root
filesystem, the throwaway qcow2 overlay a run boots from (the cached disk so stays pristine),
the accelerator a boot test proved (explorer/kvm.py), and the tools a VM disk needs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from explorer.contracts import DoctorCheck
from explorer.images.container.source import tool
from explorer.kvm import kvm_usable
from explorer.model import Accel
from explorer.tools import run_tool

VM_FILESYSTEM = "ext4"  # what make_ext4 makes: the filesystem of every VM disk explorer builds


def make_ext4(root: Path, raw: Path, size: int, entries: int, label: str, what: str, **kwargs: Any) -> None:
    """An ext4 filesystem of `size` bytes in the sparse file `raw`, holding `root` (mke2fs -d: no
    loop device; owners, modes and xattrs kept; the root directory root's), with inodes for
    twice `entries` and more."""
    inodes = max(size // 16384, entries * 2 + 16384)
    argv = ["mke2fs", "-q", "-t", VM_FILESYSTEM, "-b", "4096", "-N", str(inodes), "-L", label, "-E", "root_owner=0:0"]
    run_tool([*argv, "-d", str(root), "-F", str(raw), f"{size // 1024}k"], what, **kwargs)


def make_overlay(disk: Path, overlay: Path) -> None:
    """A throwaway qcow2 overlay backed by the cached disk, which so stays pristine."""
    run_tool(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(overlay)],
        f"creating an overlay on {disk}",
        timeout=60,
    )


def accel_for(kernel: Path) -> Accel:
    """KVM where a real boot test of `kernel` proved it works on this host, else TCG."""
    verdict = kvm_usable(kernel=kernel)
    return Accel("kvm" if verdict.usable else "tcg", verdict.reason)


def vm_tools() -> list[DoctorCheck]:
    return [
        DoctorCheck(name, functools.partial(tool, name, package))
        for name, package in (
            ("qemu-img", "qemu-utils"),
            ("mke2fs", "e2fsprogs"),
            ("qemu-system-x86_64", "qemu-system-x86"),
        )
    ]
