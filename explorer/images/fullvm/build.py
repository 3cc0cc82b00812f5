"""The full-OS VM image: Debian with systemd as init, sshd, qemu-guest-agent, DHCP
networking, a `vagrant` user, and the workload as the systemd service explorer-workload.

Built offline with mmdebstrap (the host's apt sources), cached by content hash like the
other images, and booted by direct kernel boot with the image's own kernel and Debian's own
initramfs (no bootloader, no loop device). The contract for the backends that boot it:

- `FullOSImage.disk` is an ext4 filesystem (no partition table) in a qcow2: boot with
  `FullOSImage.cmdline` (`root=/dev/vda rw console=ttyS0 net.ifnames=0`), the disk as the
  first virtio disk, `kernel` and `initrd` from the image; put a fresh overlay on the disk.
- The workload runs as `explorer-workload.service` (WORKLOAD_UNIT); Debian's own unit for
  the package (redis-server.service, postgresql.service...) is masked, as are the slow
  headless-boot units (`facts["masked_units"]`).
- qemu-guest-agent starts when the virtio-serial port `org.qemu.guest_agent.0` appears.
- SSH: user `vagrant` (SSH_USER) with Vagrant's insecure key (`insecure_private_key_path()`
  gives a 0600 copy of the private key), passwordless sudo; host keys are made at first boot.
- Network: ifupdown DHCP on eth0 and eth1 (allow-hotplug). The fullvm side needs one
  user-mode NIC (eth0) with hostfwd for SSH (guest 22) and the workload port; the vagrant
  side has its dummy libvirt NIC as eth0 and the forwarded user-mode NIC as eth1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.cache import cache_dir
from explorer.errors import BuildError
from explorer.images import sizes
from explorer.images.container.rootfs import EXCLUDES
from explorer.images.fullvm import guest_files as fullos_guest
from explorer.images.fullvm import systemd_unit as units
from explorer.images.rootfs import dpkg_db as dpkg
from explorer.images.rootfs.guest_config import (
    DEFAULT_PATH,
    compose_argv,
    find_executable,
    guest_env,
    resolve_in_root,
    resolve_user,
)
from explorer.images.vmdisk import make_ext4
from explorer.scenario import Scenario
from explorer.tools import run_tool

FORMAT = 1  # bump when the build logic changes: older images are not reused
OS_PACKAGES = (
    "linux-image-amd64",
    "systemd-sysv",
    "openssh-server",
    "sudo",
    "qemu-guest-agent",
    "ifupdown",
    "isc-dhcp-client",
)
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
WORKLOAD_UNIT = units.WORKLOAD_UNIT
GUEST_AGENT_CHANNEL = units.GUEST_AGENT_CHANNEL
SSH_USER = "vagrant"
GUEST_NICS = units.GUEST_NICS  # DHCP on each: (eth0, eth1)
IMAGE_ROOT = "/srv/explorer-rootfs"  # an image scenario's own filesystem, inside the guest
# explorer's own fixed hook (no scenario value in it): the user Vagrant logs in as.
HOOKS = ('--customize-hook=chroot "$1" useradd --create-home --shell /bin/bash --user-group vagrant',)
GIB = 1024**3
DISK_FILES = ("root.qcow2", "vmlinuz", "initrd.img", "facts.json")
FS_FACTS = "fs.json"  # the ext4 filesystem's figures (images/sizes.py), beside the disk
TAR_EXTRACT = ["tar", "--numeric-owner", "--same-permissions", "--same-owner", "--xattrs", "--xattrs-include=*", "-x"]
Progress = Callable[[str], None]


@dataclass
class FullOSImage:
    """What a hypervisor needs to boot the full-OS VM (see the module docstring)."""

    disk: Path  # qcow2 holding the ext4 root filesystem
    kernel: Path  # the image's own /boot/vmlinuz-*
    initrd: Path  # Debian's initramfs-tools initrd from the image
    cmdline: str
    kernel_version: str
    facts: dict[str, Any] = field(default_factory=dict)


def hostname_for(scenario: Scenario) -> str:
    return f"explorer-{scenario.name.replace('_', '-')}"[:63]


def recipe_service(scenario: Scenario) -> units.WorkloadService:
    """The recipe's command, user, workdir and environment, as its container runs them.
    HOME comes from the user's passwd entry (systemd sets it for User=, as Docker does)."""
    recipe = scenario.workload.recipe
    assert recipe is not None
    user, _, group = recipe.user.partition(":")
    env = (("PATH", DEFAULT_PATH), ("HOSTNAME", hostname_for(scenario)), *recipe.env)
    return units.WorkloadService(
        argv=tuple(compose_argv(list(recipe.entrypoint), list(recipe.command), scenario.workload.command)),
        user=user,
        group=group or None,
        workdir=recipe.workdir,
        env=env,
        description=scenario.name,
    )


def image_service(scenario: Scenario, image_root: Path, config: dict[str, Any]) -> units.WorkloadService:
    """The image's ENTRYPOINT + CMD under RootDirectory=: the user resolved to numeric ids
    in the image's own passwd (the guest OS's NSS does not know them), the executable
    found in the image's PATH."""
    passwd, group = (_read(image_root / "etc" / name) for name in ("passwd", "group"))
    user = resolve_user(str(config.get("user") or "root"), passwd, group)
    env = guest_env(list(config.get("env") or []), user.home, hostname_for(scenario))
    workdir = str(config.get("workdir") or "/")
    argv = compose_argv(
        list(config.get("entrypoint") or []), list(config.get("command") or []), scenario.workload.command
    )
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    return units.WorkloadService(
        argv=tuple(argv),
        executable=find_executable(image_root, argv[0], path_env, workdir),
        user=str(user.uid),
        group=str(user.gid),
        workdir=workdir,
        env=tuple((k, v) for k, _, v in (e.partition("=") for e in env)),
        root_directory=IMAGE_ROOT,
        description=scenario.name,
    )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def static_files(hostname: str) -> dict[str, str]:
    """The generated files that do not depend on the scenario's command (key input)."""
    return {
        "/etc/network/interfaces": units.interfaces_text(),
        "/etc/hostname": hostname + "\n",
        "/etc/hosts": units.hosts_text(hostname),
        "/etc/sudoers.d/vagrant": units.SUDOERS,
        f"/etc/systemd/system/{units.HOSTKEYS_UNIT}": units.HOSTKEYS_SERVICE,
        "/etc/ssh/sshd_config.d/explorer-hostkeys.conf": units.SSHD_HOSTKEYS,
        "/home/vagrant/.ssh/authorized_keys": fullos_guest.VAGRANT_PUBLIC_KEY,
    }


def cache_key(scenario: Scenario, image_id: str | None = None, image_config: dict[str, Any] | None = None) -> str:
    """Everything the image depends on: the build logic (FORMAT), suite and packages, the
    recipe (or the image's id and config), the workload unit (or its inputs) and every
    other generated file, the masks, the hooks and the kernel command line."""
    recipe = scenario.workload.recipe
    blob = {
        "format": FORMAT,
        "os_packages": OS_PACKAGES,
        "hooks": HOOKS,
        "cmdline": CMDLINE,
        "slow_units": fullos_guest.SLOW_UNITS,
        "files": static_files(hostname_for(scenario)),
        "excludes": EXCLUDES,
        "command": list(scenario.workload.command),
    }
    if recipe is not None:
        blob.update(
            suite=recipe.suite,
            packages=list(recipe.packages),
            recipe=recipe.content_hash(),
            scenario_files=dict(recipe.files),
            unit=units.workload_unit(recipe_service(scenario)),
        )
    else:
        blob.update(suite="bookworm", image=image_id, image_config=image_config or {}, hostname=hostname_for(scenario))
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def image_dir(key: str) -> Path:
    return cache_dir("fullvm") / key


def ensure_fullos_image(
    scenario: Scenario,
    progress: Progress | None = None,
    rootfs_tar: Path | str | None = None,
    image_config: dict[str, Any] | None = None,
) -> FullOSImage:
    """The scenario's full-OS image, built once per content hash.

    For an image scenario (no recipe) give `rootfs_tar` (the image's exported filesystem)
    and `image_config` (docker_image.image_facts: entrypoint, command, user, workdir, env,
    image_id); the service then runs the image's ENTRYPOINT + CMD in its own root."""
    if scenario.workload.recipe is None and (rootfs_tar is None or image_config is None):
        raise BuildError(
            f"the full-OS image of {scenario.name} needs the image's filesystem and config",
            hint="pass rootfs_tar and image_config (the image is exported by the caller)",
        )
    image_id = None
    if scenario.workload.recipe is None:
        assert image_config is not None and rootfs_tar is not None
        image_id = str(image_config.get("image_id") or _digest(Path(rootfs_tar)))
    config = (
        None
        if image_config is None
        else {k: image_config.get(k) for k in ("entrypoint", "command", "user", "workdir", "env")}
    )
    key = cache_key(scenario, image_id, config)
    final = image_dir(key)
    built = not (final / "facts.json").is_file()
    if built:
        if progress:
            progress(f"building the full-OS image of {scenario.name} (mmdebstrap, mke2fs, qemu-img)")
        _build(scenario, key, final, Path(rootfs_tar) if rootfs_tar else None, config)
    return _load(final, built)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _build(scenario: Scenario, key: str, final: Path, rootfs_tar: Path | None, config: dict[str, Any] | None) -> None:
    """Build in `.build-KEY-PID` next to the cache entry and rename into place at the end:
    an interrupted build leaves nothing that looks complete (and is reaped later)."""
    if os.geteuid() != 0:
        raise BuildError(
            "building the full-OS image needs root (mmdebstrap --mode=root, the files' owners)",
            hint="run explorer as root (or through sudo)",
        )
    started = time.monotonic()
    _reap_stale_builds(final.parent)
    work = final.parent / f".build-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    out, root = work / "out", work / "root"
    out.mkdir(parents=True)
    timeout = scenario.timeouts.build_s
    try:
        packages = OS_PACKAGES + (scenario.workload.recipe.packages if scenario.workload.recipe else ())
        (work / "tmp").mkdir()  # mmdebstrap's own temporary files, removed with the build's
        run_tool(
            mmdebstrap_argv(scenario, packages, root),
            f"building the full-OS root filesystem of {scenario.name}",
            hint="check the package names and the host's apt sources",
            timeout=timeout,
            env={**os.environ, "TMPDIR": str(work / "tmp")},
        )
        facts = _customize(scenario, root, rootfs_tar, config, timeout)
        facts.update(_measure(root, facts["workload_packages"], scenario.workload.recipe is None))
        facts["kernel_version"] = _copy_boot_files(root, out)
        _make_disk(
            root, work / "root.img", out / "root.qcow2", facts["rootfs_bytes"], facts.pop("rootfs_entries"), timeout
        )
        facts.update(build_s=round(time.monotonic() - started, 1), cache_key=key, cmdline=CMDLINE)
        (out / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
        try:
            os.rename(out, final)
        except OSError:
            if not (final / "facts.json").is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _reap_stale_builds(parent: Path) -> None:
    """Remove the work directories of builds whose process is gone."""
    for work in parent.glob(".build-*-*"):
        pid = work.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(work, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mmdebstrap_argv(scenario: Scenario, packages: tuple[str, ...], root: Path) -> list[str]:
    suite = scenario.workload.recipe.suite if scenario.workload.recipe else "bookworm"
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=important",
        "--format=directory",
        "--quiet",
        f"--include={','.join(packages)}",
    ]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES]
    return argv + list(HOOKS) + [suite, str(root)]


def _customize(
    scenario: Scenario, root: Path, rootfs_tar: Path | None, config: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """Python writes explorer's files into the built root; returns the facts it decided."""
    fullos_guest.install_system(root, hostname_for(scenario))
    fullos_guest.install_vagrant_user(root)
    recipe = scenario.workload.recipe
    if recipe is not None:
        for path, text in recipe.files:
            fullos_guest.write_scenario_file(root, path, text)
        service = recipe_service(scenario)
        find_executable(root, service.argv[0], DEFAULT_PATH, service.workdir)  # fail now, not at boot
        workload = dpkg.workload_packages(_packages(root), recipe.packages, OS_PACKAGES)
    else:
        assert rootfs_tar is not None and config is not None
        image_root = fullos_guest.guest_dir(root, IMAGE_ROOT)
        run_tool(
            [*TAR_EXTRACT, "-f", str(rootfs_tar), "-C", str(image_root)],
            f"unpacking {rootfs_tar.name}",
            timeout=timeout,
        )
        (image_root / ".dockerenv").unlink(missing_ok=True)
        fullos_guest.write_file(image_root, "/etc/hostname", hostname_for(scenario) + "\n")
        fullos_guest.write_file(image_root, "/etc/hosts", units.hosts_text(hostname_for(scenario)))
        service = image_service(scenario, image_root, config)
        home = next((v for k, v in service.env if k == "HOME"), "/")
        fullos_guest.ensure_ids(root, int(service.user), int(service.group or 0), home)
        workload = []
    masked = sorted(set(fullos_guest.SLOW_UNITS) | set(fullos_guest.package_units(root, workload)))
    fullos_guest.mask_units(root, masked)
    fullos_guest.install_unit(root, WORKLOAD_UNIT, units.workload_unit(service), "multi-user.target")
    (root / "etc/machine-id").write_text("")  # each boot makes its own (mmdebstrap empties it too)
    if recipe is not None:  # systemd's own parser: a unit it rejects fails the build, not the boot
        run_tool(
            ["chroot", str(root), "systemd-analyze", "verify", "--man=no", f"/{fullos_guest.SYSTEM}/{WORKLOAD_UNIT}"],
            f"checking {WORKLOAD_UNIT} with systemd-analyze verify",
            timeout=120,
        )
    return {
        "masked_units": masked,
        "workload_packages": workload,
        "service": WORKLOAD_UNIT,
        "ssh_user": SSH_USER,
        "guest_agent_channel": GUEST_AGENT_CHANNEL,
        "exec_start": units.exec_line(service.argv, service.executable),
    }


def _packages(root: Path) -> dict[str, dpkg.Package]:
    return dpkg.parse_status((root / "var/lib/dpkg/status").read_text(errors="replace"))


def _measure(root: Path, workload_packages: list[str], image_scenario: bool) -> dict[str, Any]:
    """What fills the root filesystem: modules, the workload (its packages, or the image's
    own filesystem), the rest."""
    total, entries = dpkg.tree_bytes(root)
    modules_dir = resolve_in_root(root, "/lib/modules")
    modules = dpkg.tree_bytes(modules_dir)[0] if modules_dir else 0
    if image_scenario:
        workload = dpkg.tree_bytes(root / IMAGE_ROOT.lstrip("/"))[0]
        method = f"the image's own filesystem under {IMAGE_ROOT}"
    else:
        workload = dpkg.files_bytes(root, [p for name in workload_packages for p in dpkg.package_files(root, name)])
        method = (
            "allocated bytes of the files dpkg lists for the workload's packages: the scenario "
            "packages' dependency closure minus the OS's"
        )
    return {
        "rootfs_bytes": total,
        "rootfs_entries": entries,
        "rootfs_modules_bytes": modules,
        "rootfs_workload_bytes": workload,
        "rootfs_other_bytes": total - modules - workload,
        "rootfs_workload_method": method,
        "package_count": len(_packages(root)),
    }


def _copy_boot_files(root: Path, out: Path) -> str:
    """The image's own kernel and initrd, made readable (they are public Debian files)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel in the full-OS image's /boot, found {[k.name for k in kernels]}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise BuildError(f"the full-OS image has no initrd for kernel {version} (initramfs-tools did not run?)")
    for source, name in ((kernels[0], "vmlinuz"), (initrd, "initrd.img")):
        shutil.copyfile(source, out / name)
        (out / name).chmod(0o644)
    return version


def disk_size(content_bytes: int) -> int:
    """At least 4 GiB (room to write, as a user's VM has), else 1.5x the content + 1 GiB,
    in whole 256 MiB; ext4 in a sparse file, so unused room costs nothing on disk."""
    wanted = max(4 * GIB, int(content_bytes * 1.5) + GIB)
    step = 256 * 1024 * 1024
    return -(-wanted // step) * step


def _make_disk(root: Path, raw: Path, qcow2: Path, content: int, entries: int, timeout: float) -> None:
    """mke2fs -d (no loop device, owners and modes kept), then a compressed qcow2; the
    root directory and the raw image are removed as soon as they are no longer needed."""
    make_ext4(
        root, raw, disk_size(content), entries, "explorer-root", "making the full-OS ext4 filesystem", timeout=timeout
    )
    shutil.rmtree(root)
    filesystem = sizes.filesystem_in_use(raw)
    (qcow2.parent / FS_FACTS).write_text(json.dumps(filesystem, indent=1, sort_keys=True) + "\n")
    run_tool(
        ["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
        "compressing the full-OS disk to qcow2",
        timeout=timeout,
    )
    raw.unlink()
    qcow2.chmod(0o644)


def _load(directory: Path, built: bool) -> FullOSImage:
    facts = json.loads((directory / "facts.json").read_text())
    disk, kernel, initrd = (directory / name for name in DISK_FILES[:3])
    info = sizes.disk_info(disk)
    facts.update(
        disk_bytes=disk.stat().st_blocks * 512,
        disk_file_bytes=disk.stat().st_size,
        disk_virtual_bytes=int(info["virtual-size"]),
        disk_format=info["format"],
        kernel_bytes=kernel.stat().st_size,
        initrd_bytes=initrd.stat().st_size,
        built=built,
    )
    facts["vm_image_bytes"] = facts["disk_bytes"] + facts["kernel_bytes"] + facts["initrd_bytes"]
    facts.update(sizes.vm_sizes(sizes.cached_filesystem(disk, directory / FS_FACTS), disk, kernel, initrd, True))
    if not built:
        facts["build_s_when_built"] = facts.pop("build_s", None)
        facts["build_s"] = 0.0
    return FullOSImage(disk, kernel, initrd, facts.get("cmdline", CMDLINE), facts["kernel_version"], facts)


VAGRANT_KEYS_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant"


def insecure_private_key_path() -> Path:
    """A 0600 copy of Vagrant's insecure private key (Debian ships it 0644, which ssh refuses)."""
    found = sorted(Path("/").glob(VAGRANT_KEYS_GLOB.lstrip("/")))
    if not found:
        listed = run_tool(["dpkg", "-L", "vagrant"], "finding Vagrant's insecure key", timeout=30).stdout
        found = [Path(line) for line in listed.splitlines() if line.endswith("/keys/vagrant")]
    if not found:
        raise BuildError("Vagrant's insecure private key was not found", hint="apt-get install vagrant")
    target = cache_dir("vagrant") / "insecure_private_key"
    data = found[-1].read_bytes()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    target.chmod(0o600)
    return target
