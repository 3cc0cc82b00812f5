"""The redis full-OS image, built once per cache (mmdebstrap + mke2fs + qemu-img, ~2 min
cold; no Docker, no libvirt), checked with independent tools: qemu-img info, file,
e2fsck and debugfs on a raw copy of the disk, tar on the box, os.stat for the sizes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from explorer.images import box as vagrant_box
from explorer.images.fullvm import build as fullos
from tests.conftest import skip_or_fail_in_ci

pytestmark = pytest.mark.slow
TOOLS = ("mmdebstrap", "mke2fs", "qemu-img", "debugfs", "e2fsck", "file")


def tool(*argv: str, timeout: float = 300) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=timeout).stdout


@pytest.fixture(scope="session")
def redis_fullos(redis_scenario):
    missing = [name for name in TOOLS if shutil.which(name) is None]
    if missing or os.geteuid() != 0:
        skip_or_fail_in_ci(f"building a full-OS image needs root and {', '.join(TOOLS)} (missing: {missing})")
    return fullos.ensure_fullos_image(redis_scenario)


@pytest.fixture(scope="module")
def raw_disk(redis_fullos, tmp_path_factory):
    """A raw (sparse) copy of the disk for debugfs and e2fsck, removed after this module."""
    raw = tmp_path_factory.mktemp("fullos") / "root.raw"
    tool("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(redis_fullos.disk), str(raw))
    yield raw
    raw.unlink()


def debugfs(raw: Path, request: str) -> str:
    return tool("debugfs", "-R", request, str(raw))


def test_disk_is_a_qcow2_of_the_reported_sizes(redis_fullos):
    info = json.loads(tool("qemu-img", "info", "--output=json", str(redis_fullos.disk)))
    facts = redis_fullos.facts
    assert info["format"] == "qcow2" and info["virtual-size"] == facts["disk_virtual_bytes"] >= 4 * 2**30
    assert facts["disk_bytes"] == os.stat(redis_fullos.disk).st_blocks * 512
    assert facts["kernel_bytes"] == os.stat(redis_fullos.kernel).st_size
    assert facts["initrd_bytes"] == os.stat(redis_fullos.initrd).st_size
    assert facts["vm_image_bytes"] == facts["disk_bytes"] + facts["kernel_bytes"] + facts["initrd_bytes"]
    assert facts["disk_bytes"] < facts["rootfs_bytes"]  # compressed


def test_kernel_and_initrd_are_debians(redis_fullos):
    kernel = tool("file", "-b", str(redis_fullos.kernel))
    assert "Linux kernel x86 boot executable" in kernel and f"version {redis_fullos.kernel_version} " in kernel
    assert re.search(r"gzip|cpio|Zstandard|XZ", tool("file", "-b", str(redis_fullos.initrd)))
    assert redis_fullos.cmdline == "root=/dev/vda rw console=ttyS0 net.ifnames=0"


def test_rootfs_breakdown_adds_up(redis_fullos):
    f = redis_fullos.facts
    assert f["rootfs_modules_bytes"] > 300 * 2**20  # Debian's kernel modules, ~400 MB
    assert 1 * 2**20 < f["rootfs_workload_bytes"] < 50 * 2**20
    assert f["rootfs_other_bytes"] == f["rootfs_bytes"] - f["rootfs_modules_bytes"] - f["rootfs_workload_bytes"] > 0
    assert "redis-server" in f["workload_packages"] and "systemd" not in f["workload_packages"]
    assert f["package_count"] > 150
    assert {"e2scrub_reap.service", "getty-static.service", "redis-server.service"} <= set(f["masked_units"])


def test_filesystem_is_clean(raw_disk):
    assert (
        subprocess.run(["e2fsck", "-fn", str(raw_disk)], check=False, capture_output=True, timeout=300).returncode == 0
    )


def test_workload_unit_is_enabled_and_the_packages_masked(raw_disk):
    unit = debugfs(raw_disk, f"cat /etc/systemd/system/{fullos.WORKLOAD_UNIT}")
    assert 'ExecStart=redis-server --bind 0.0.0.0 --protected-mode no --save "" --appendonly no' in unit
    assert "User=redis" in unit and "WorkingDirectory=/var/lib/redis" in unit and "Restart=no" in unit
    wants = debugfs(raw_disk, "ls /etc/systemd/system/multi-user.target.wants")
    assert fullos.WORKLOAD_UNIT in wants and "redis-server.service" not in wants and "e2scrub_reap" not in wants
    for name in ("redis-server.service", "e2scrub_reap.service", "getty-static.service"):
        assert 'Fast link dest: "/dev/null"' in debugfs(raw_disk, f"stat /etc/systemd/system/{name}")
    hostkeys = debugfs(raw_disk, "ls /etc/systemd/system/ssh.service.wants")
    assert "explorer-ssh-hostkeys.service" in hostkeys


def test_vagrant_user_and_os_configuration(raw_disk):
    debians = sorted(Path("/").glob(fullos.VAGRANT_KEYS_GLOB.lstrip("/") + ".pub"))
    if debians:  # the key Vagrant itself uses with insert_key = false
        assert (
            debugfs(raw_disk, "cat /home/vagrant/.ssh/authorized_keys").split()[:2]
            == debians[-1].read_text().split()[:2]
        )
    keys = debugfs(raw_disk, "stat /home/vagrant/.ssh/authorized_keys")
    assert "Mode:  0600" in keys
    assert "NOPASSWD: ALL" in debugfs(raw_disk, "cat /etc/sudoers.d/vagrant")
    assert "Mode:  0440" in debugfs(raw_disk, "stat /etc/sudoers.d/vagrant")
    interfaces = debugfs(raw_disk, "cat /etc/network/interfaces")
    assert "iface eth0 inet dhcp" in interfaces and "iface eth1 inet dhcp" in interfaces
    assert "ssh_host_" not in debugfs(raw_disk, "ls /etc/ssh")  # made at first boot
    assert debugfs(raw_disk, "cat /etc/machine-id") == ""
    assert debugfs(raw_disk, "cat /etc/hostname").strip() == "explorer-redis"
    assert "User:     0   Group:     0" in debugfs(raw_disk, "stat /")


def test_box_file(redis_fullos, redis_scenario):
    box = vagrant_box.ensure_box(redis_scenario, redis_fullos, driver="qemu")
    members = tool("tar", "-tf", str(box.path)).split()
    assert sorted(members) == ["Vagrantfile", "box.img", "initrd.img", "metadata.json", "vmlinuz"]
    metadata = json.loads(tool("tar", "-xOf", str(box.path), "metadata.json"))
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 4}
    assert "lv.kernel" in tool("tar", "-xOf", str(box.path), "Vagrantfile")
    settings = json.loads(box.settings.read_text())
    assert settings["box"] == box.name and settings["driver"] == "qemu"
    key = Path(settings["private_key"])
    assert key.stat().st_mode & 0o777 == 0o600 and "PRIVATE KEY" in key.read_text()


@pytest.fixture(scope="module")
def image_fullos(redis_fullos, redis_scenario):
    """An image scenario's full-OS image without Docker: the redis recipe's own rootfs
    tarball stands in for an exported image, with the config Docker would report."""
    from explorer import scenario as scenarios
    from explorer.images.container.rootfs import build_rootfs

    recipe = redis_scenario.workload.recipe
    tar = build_rootfs(recipe, redis_scenario.timeouts.build_s)
    config = {
        "entrypoint": [],
        "command": list(recipe.command),
        "user": recipe.user,
        "workdir": recipe.workdir,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "image_id": f"rootfs:{tar.name}",
    }
    scenario = scenarios.image_scenario("explorer/redis:rootfs", 6379, "redis", ("redis-server",))
    return fullos.ensure_fullos_image(scenario, rootfs_tar=tar, image_config=config)


def test_image_scenario_runs_in_the_images_own_root(image_fullos, tmp_path):
    raw = tmp_path / "image.raw"
    tool("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image_fullos.disk), str(raw))
    try:
        unit = debugfs(raw, f"cat /etc/systemd/system/{fullos.WORKLOAD_UNIT}")
        passwd = debugfs(raw, "cat /etc/passwd")
        image_passwd = debugfs(raw, f"cat {fullos.IMAGE_ROOT}/etc/passwd")
        executable = debugfs(raw, f"stat {fullos.IMAGE_ROOT}/usr/bin/redis-server")
    finally:
        raw.unlink()
    uid = next(line.split(":")[2] for line in image_passwd.splitlines() if line.startswith("redis:"))
    assert "ExecStart=@/usr/bin/redis-server redis-server --bind 0.0.0.0" in unit
    assert f"User={uid}\n" in unit and f"RootDirectory={fullos.IMAGE_ROOT}" in unit
    assert any(line.split(":")[2] == uid for line in passwd.splitlines() if line.count(":") >= 6)
    assert "Inode:" in executable
    facts = image_fullos.facts
    assert facts["workload_packages"] == [] and "redis-server.service" not in facts["masked_units"]
    assert facts["rootfs_workload_bytes"] > 50 * 2**20  # the image's whole filesystem
