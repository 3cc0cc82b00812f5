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
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException

from explorer.errors import BuildError
from explorer.images import cache_dir, make_ext4, partials, sizes
from explorer.images import run_tool as _run
from explorer.images.fullvm.dpkg_db import tree_bytes
from explorer.images.microvm import guest_config
from explorer.images.microvm.initramfs import ensure_initramfs, static_busybox
from explorer.images.microvm.kernel import ensure_kernel
from explorer.model import LABEL_MANAGED, LABEL_OWNER, Artifact
from explorer.scenario import Scenario

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


TAR_EXTRACT = ["tar", "--numeric-owner", "--same-permissions", "--same-owner", "--xattrs", "--xattrs-include=*", "-x"]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise BuildError(
            "building a VM disk needs root (to keep the image's file owners)",
            hint="run explorer as root (or through sudo)",
        )


def unpack_tar(root: Path, tar: Path) -> None:
    """Unpack as root, keeping numeric owners, modes, device nodes and capabilities."""
    _require_root()
    _run(TAR_EXTRACT + ["-f", str(tar), "-C", str(root)], f"unpacking {tar.name}")


def export_image(client: docker.DockerClient, ref: str, root: Path) -> None:
    """Any image Docker can run, pulled ones included: stream the filesystem of a created
    (never started) container straight into tar."""
    _require_root()
    container = None
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(TAR_EXTRACT + ["-f", "-", "-C", str(root)], stdin=subprocess.PIPE, stderr=errors)
        try:
            container = client.containers.create(
                ref,
                entrypoint=["/explorer-export-only"],
                network_disabled=True,
                name=f"explorer-export-{uuid.uuid4().hex[:12]}",
                labels={LABEL_MANAGED: "true", LABEL_OWNER: str(os.getpid())},
            )
            _feed(tar, container.export(chunk_size=MIB))
        except DockerException as exc:
            raise BuildError(f"Docker could not export the filesystem of {ref}: {exc}") from exc
        finally:
            _stop(tar)
            if container is not None:
                _remove(container)
        if tar.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-10:]
            raise BuildError(f"unpacking the export of {ref} failed (tar exited {tar.returncode}):\n" + "\n".join(tail))


def _feed(tar: subprocess.Popen[bytes], chunks: Any) -> None:
    """Write the export into tar's stdin; if tar stops early, its exit code tells why."""
    assert tar.stdin is not None
    try:
        for chunk in chunks:
            tar.stdin.write(chunk)
        tar.stdin.close()
    except BrokenPipeError:
        pass
    tar.wait()


def _stop(tar: subprocess.Popen[bytes]) -> None:
    if tar.poll() is None:
        tar.kill()
    try:
        if tar.stdin is not None:
            tar.stdin.close()
    except OSError:
        pass
    tar.wait()


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except DockerException:
        pass  # labelled: `explorer clean` finds it


def _install_explorer(root: Path, scenario: Scenario, artifact: Artifact, hostname: str, busybox: Path) -> str:
    """Add /.explorer (busybox, init, view.sh, workload.conf) and what Docker would provide
    at run time (/etc/hosts, /etc/hostname); return the workload config."""
    exec_argv, workdir = workload_exec(root, scenario, artifact, hostname)
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


def workload_exec(root: Path, scenario: Scenario, artifact: Artifact, hostname: str) -> tuple[list[str], str]:
    """The argv that runs the image's ENTRYPOINT + CMD (or the scenario's command) as Docker
    would, with busybox at /.explorer/busybox: a clean environment, the image's user; and the
    working directory to run it in."""
    facts = artifact.facts
    user = guest_config.resolve_user(
        str(facts.get("user") or "root"), _read(root, "etc/passwd"), _read(root, "etc/group")
    )
    env = guest_config.guest_env(list(facts.get("env") or []), user.home, hostname)
    workdir = str(facts.get("workdir") or "/")
    argv = guest_config.compose_argv(
        list(facts.get("entrypoint") or []), list(facts.get("command") or []), scenario.workload.command
    )
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), guest_config.DEFAULT_PATH)
    executable = guest_config.find_executable(root, argv[0], path_env, workdir)
    return guest_config.exec_argv(argv, executable, env, user), workdir


def _read(root: Path, relative: str) -> str:
    found = guest_config.resolve_in_root(root, "/" + relative)
    return found.read_text(errors="replace") if found is not None and found.is_file() else ""


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
