"""The VM side of a scenario: the container image's own filesystem on an ext4 qcow2 disk,
booted with Debian's kernel and a small initramfs, so both sides run the same bits.

The disk carries a static busybox and explorer's init under /.explorer; the init prints
EXPLORER-MARK lines on the serial console (format in explorer/guest/__init__.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import docker

from explorer.cache import cache_dir
from explorer.images import partials, sizes
from explorer.images.microvm.initramfs import ensure_initramfs
from explorer.images.microvm.kernel import ensure_kernel
from explorer.images.rootfs import guest_config
from explorer.images.rootfs.busybox import static_busybox
from explorer.images.rootfs.dpkg_db import tree_bytes
from explorer.images.rootfs.export import export_image, unpack_tar
from explorer.images.vmdisk import make_ext4
from explorer.model import Artifact
from explorer.scenario import Scenario
from explorer.tools import run_tool as _run

FORMAT = 1  # bump when the disk layout or the build logic changes: old disks are not reused
MIB = 1024 * 1024
CMDLINE = (
    "console=ttyS0 root=/dev/vda rw"
    " net.ifnames=0"  # the NIC stays eth0, as the guest init configures it
    " panic=-1"  # a guest that panics reboots at once (a domain set to destroy on reboot ends)
    # Quiet, yet the kernel's first line (`Linux version ...`, KERN_NOTICE) still shows: the
    # "guest kernel up" moment on the console.
    " loglevel=6"
    # Boot-time only, measured under TCG (median boot to PONG 4.4 s -> 3.3 s): skip the crypto
    # self-tests, and route PCI interrupts without evaluating ACPI link devices (~0.1 s each).
    " cryptomgr.notests pci=noacpi"
)
Progress = Callable[[str], None]


@dataclass
class VMImage:
    """What a hypervisor needs to boot the workload: disk, kernel, initramfs, command line."""

    disk: Path
    kernel: Path
    initramfs: Path
    cmdline: str
    kernel_version: str
    facts: dict[str, Any] = field(default_factory=dict)


def guest_files() -> dict[str, str]:
    """The init and view scripts put on the disk (part of the cache key)."""
    package = resources.files("explorer.guest")
    return {name: package.joinpath(name).read_text() for name in ("init.sh", "view.sh")}


def cache_key(
    image_id: str,
    kernel_version: str,
    scripts: dict[str, str],
    override: tuple[str, ...] | list[str],
    port: int,
    busybox_digest: str = "",
) -> str:
    """Everything the disk's content depends on; the image id covers its files and config."""
    blob = json.dumps(
        {
            "format": FORMAT,
            "image": image_id,
            "kernel": kernel_version,
            "scripts": scripts,
            "command": list(override),
            "port": port,
            "busybox": busybox_digest,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def image_key(scenario: Scenario, artifact: Artifact) -> str:
    """What identifies the disk's source image. An offline build's tag is a content hash (the
    recipe and the image config, images/docker_image.py), while `docker import` gives every
    re-import of the same rootfs a new image id: keyed by id, each re-import cost a new disk."""
    if scenario.workload.recipe is not None and artifact.ref.startswith("explorer/"):
        return f"recipe:{artifact.ref}"
    return str(artifact.facts.get("image_id") or artifact.ref)


def disk_size(content_bytes: int) -> int:
    """Room for the workload to write: 1.3x the content + 256 MiB, in whole 64 MiB."""
    wanted = int(content_bytes * 1.3) + 256 * MIB
    return -(-wanted // (64 * MIB)) * 64 * MIB


def ensure_vm_image(
    client: docker.DockerClient, scenario: Scenario, artifact: Artifact, progress: Progress | None = None
) -> VMImage:
    """The scenario's bootable VM image, built once per (image, kernel, init, command)."""
    kernel = ensure_kernel(progress)
    initramfs = ensure_initramfs(kernel)
    busybox = static_busybox()
    key = cache_key(
        image_key(scenario, artifact),
        kernel.version,
        guest_files(),
        scenario.workload.command,
        scenario.workload.port,
        hashlib.sha256(busybox.read_bytes()).hexdigest(),
    )
    disk = cache_dir("vm") / f"{key}.qcow2"
    built = not disk.exists()
    if built:
        if progress:
            progress(f"building the VM disk for {artifact.ref}")
        _build_disk(client, scenario, artifact, key, disk, busybox)
    facts = _facts(disk, kernel.boot_image, initramfs, pvh=kernel.boot_image != kernel.vmlinuz)
    facts.update(
        built=built,
        cache_key=key,
        kernel_version=kernel.version,
        kernel_pvh=kernel.boot_image != kernel.vmlinuz,
        kernel_compressed_bytes=kernel.vmlinuz.stat().st_size,
    )
    return VMImage(disk, kernel.boot_image, initramfs, CMDLINE, kernel.version, facts)


def _build_disk(
    client: docker.DockerClient, scenario: Scenario, artifact: Artifact, key: str, disk: Path, busybox: Path
) -> None:
    started = time.monotonic()
    with partials.build_dir(cache_dir("tmp"), partials.VM_DISK) as tmp:  # PID-named: clean finds a dead one's
        root = Path(tmp, "root")
        root.mkdir()
        tar = artifact.paths.get("rootfs_tar")
        if tar and Path(tar).exists():
            unpack_tar(root, Path(tar))
        else:
            export_image(client, artifact.ref, root)
        config = _install_explorer(root, scenario, artifact, f"explorer-{key[:12]}", busybox)
        content, entries = _content(root)
        raw, partial = Path(tmp, "disk.raw"), Path(tmp, "disk.qcow2")
        make_ext4(root, raw, disk_size(content), entries, "explorer", "making the VM's ext4 filesystem")
        filesystem = sizes.filesystem_in_use(raw)
        _run(
            ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(partial)],
            "converting the VM disk to qcow2",
        )
        meta = {
            "image": artifact.ref,
            "image_id": artifact.facts.get("image_id"),
            "rootfs_bytes": content,
            **filesystem,
            "build_s": round(time.monotonic() - started, 2),
            "config": config,
        }
        disk.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        os.replace(partial, disk)


def _install_explorer(root: Path, scenario: Scenario, artifact: Artifact, hostname: str, busybox: Path) -> str:
    """Add /.explorer (busybox, init, view.sh, workload.conf) and what Docker would provide
    at run time (/etc/hosts, /etc/hostname); return the workload config."""
    exec_argv, workdir = guest_config.workload_exec(root, scenario, artifact, hostname)
    config = guest_config.workload_config(exec_argv, workdir, scenario.workload.port, hostname)
    home = root / ".explorer"
    home.mkdir(mode=0o755)
    shutil.copy2(busybox, home / "busybox")
    for name, text in guest_files().items():
        target = home / ("init" if name == "init.sh" else name)
        target.write_text(text)
        target.chmod(0o755)
    (home / "workload.conf").write_text(config)
    (root / ".dockerenv").unlink(missing_ok=True)  # a VM is not a container
    _replace_file(root, "etc/hostname", hostname + "\n")
    _replace_file(
        root, "etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.15\t{hostname}\n"
    )
    return config


def _replace_file(root: Path, relative: str, text: str) -> None:
    """Write a regular file in the image, replacing a symlink rather than following it."""
    target = root / relative
    if target.parent.is_dir() and not target.parent.is_symlink():
        target.unlink(missing_ok=True)
        target.write_text(text)
        target.chmod(0o644)


def _content(root: Path) -> tuple[int, int]:
    """Bytes allocated under `root` (hard links counted once) and its number of entries."""
    return tree_bytes(root)


def _facts(disk: Path, kernel: Path, initramfs: Path, pvh: bool = False) -> dict[str, Any]:
    info = sizes.disk_info(disk)
    disk_stat, kernel_stat = disk.stat(), kernel.stat()
    facts: dict[str, Any] = {  # *_bytes: allocated on the host; *_file_bytes: apparent size
        "disk_bytes": disk_stat.st_blocks * 512,
        "disk_file_bytes": disk_stat.st_size,
        "disk_virtual_bytes": int(info["virtual-size"]),
        "kernel_bytes": kernel_stat.st_blocks * 512,
        "kernel_file_bytes": kernel_stat.st_size,
        "initramfs_bytes": initramfs.stat().st_size,
    }
    facts["vm_image_bytes"] = facts["disk_bytes"] + facts["kernel_bytes"] + facts["initramfs_bytes"]
    try:
        facts["rootfs_bytes"] = json.loads(disk.with_suffix(".json").read_text())["rootfs_bytes"]
    except (OSError, ValueError, KeyError):
        pass
    filesystem = sizes.cached_filesystem(disk, disk.with_suffix(".json"))
    what = "kernel (its uncompressed vmlinux, booted directly)" if pvh else "kernel"
    return {**facts, **sizes.vm_sizes(filesystem, disk, kernel, initramfs, compressed=False, kernel_what=what)}
