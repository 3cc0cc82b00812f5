"""The VM image builder's pure logic: module order, Docker's argv/user/env rules, the
workload config's encoding (checked against the guest's own busybox decoder), cache keys."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from explorer import kvm
from explorer.errors import BuildError
from explorer.guest import parse_marks
from explorer.images.microvm.initramfs import INIT, initramfs_archive
from explorer.images.microvm.kernel import has_pvh_entry, load_order, module_name
from explorer.images.microvm.vm_image import cache_key, disk_size, guest_files
from explorer.images.rootfs import guest_config as gc
from explorer.images.rootfs.busybox import has_interpreter
from explorer.tools import run_tool
from tests.conftest import cpio_members

MODULES_DEP = """\
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/sound/unrelated.ko: kernel/lib/crc16.ko
"""


def names(paths: list[str]) -> list[str]:
    return [module_name(p) for p in paths]


def test_load_order_puts_every_dependency_first_and_only_what_is_needed():
    order = names(load_order(MODULES_DEP, ("virtio_pci", "virtio_blk", "virtio_rng", "ext4", "crc32c_generic")))
    assert sorted(order) == sorted(set(order))
    assert "unrelated" not in order
    for module, deps in {
        "virtio": ["virtio_ring"],
        "virtio_pci": ["virtio", "virtio_pci_modern_dev"],
        "ext4": ["jbd2", "mbcache", "crc16"],
        "virtio_rng": ["virtio"],
    }.items():
        assert all(order.index(dep) < order.index(module) for dep in deps), (module, order)
    assert order[-1] == "crc32c_generic"


def test_load_order_skips_builtin_roots_and_rejects_unknown_ones():
    assert "ext4" not in names(load_order(MODULES_DEP, ("ext4",), frozenset({"ext4"})))
    with pytest.raises(BuildError, match="no module 'nvme'"):
        load_order(MODULES_DEP, ("nvme",))


def test_module_names_drop_compression_and_dashes():
    assert module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz") == "virtio_rng"
    assert module_name("kernel/fs/ext4/ext4.ko.zst") == "ext4"


def test_argv_is_entrypoint_then_cmd_and_an_override_replaces_cmd():
    assert gc.compose_argv(["/entry.sh"], ["redis-server", "--port", "1"]) == [
        "/entry.sh",
        "redis-server",
        "--port",
        "1",
    ]
    assert gc.compose_argv(["/entry.sh"], ["redis-server"], ("postgres", "-c", "x=1")) == [
        "/entry.sh",
        "postgres",
        "-c",
        "x=1",
    ]
    assert gc.compose_argv([], ["a"], ()) == ["a"]
    with pytest.raises(BuildError, match="neither an ENTRYPOINT nor a CMD"):
        gc.compose_argv([], [], ())


PASSWD = "root:x:0:0:root:/root:/bin/bash\nredis:x:100:101::/var/lib/redis:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nredis:x:101:\nssl-cert:x:110:redis\n"


def test_users_resolve_like_runc():
    assert gc.resolve_user("redis", PASSWD, GROUP) == gc.GuestUser(100, 101, "/var/lib/redis", True)
    assert gc.resolve_user("100", PASSWD, GROUP) == gc.GuestUser(100, 101, "/var/lib/redis", True)
    assert gc.resolve_user("", PASSWD, GROUP) == gc.GuestUser(0, 0, "/root", True)
    assert gc.resolve_user("4242", PASSWD, GROUP) == gc.GuestUser(4242, 0, "/", False)
    assert gc.resolve_user("redis:ssl-cert", PASSWD, GROUP) == gc.GuestUser(100, 110, "/var/lib/redis", False)
    assert gc.resolve_user("4242:77", PASSWD, GROUP) == gc.GuestUser(4242, 77, "/", False)
    with pytest.raises(BuildError, match="'nobody' is not in its /etc/passwd"):
        gc.resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(BuildError, match="group 'wheel'"):
        gc.resolve_user("redis:wheel", PASSWD, GROUP)


def test_environment_is_completed_as_docker_completes_it():
    env = gc.guest_env(["LANG=C.UTF-8", "NOVALUE"], "/var/lib/redis", "vm1")
    assert env == [f"PATH={gc.DEFAULT_PATH}", "HOSTNAME=vm1", "LANG=C.UTF-8", "HOME=/var/lib/redis"]
    assert gc.guest_env(["PATH=/opt", "HOME=/h"], "/x", "vm1") == ["HOSTNAME=vm1", "PATH=/opt", "HOME=/h"]


def test_exec_argv_switches_user_the_way_that_keeps_docker_semantics():
    env = ["PATH=/bin"]
    root = gc.exec_argv(["redis-server", "--x"], "/usr/bin/redis-server", env, gc.GuestUser(0, 0, "/root", True))
    assert root[:4] == [gc.BUSYBOX, "env", "-i", "PATH=/bin"]
    assert root[4:] == [
        gc.BUSYBOX,
        "start-stop-daemon",
        "-S",
        "-p",
        "/.explorer/none.pid",
        "-x",
        "/usr/bin/redis-server",
        "-a",
        "redis-server",
        "--",
        "--x",
    ]
    named = gc.exec_argv(["redis-server"], "/usr/bin/redis-server", env, gc.GuestUser(100, 101, "/", True))
    assert named[named.index("-c") + 1] == "100:101"  # start-stop-daemon: initgroups by name
    numeric = gc.exec_argv(["app", "a b"], "/app", env, gc.GuestUser(4242, 7, "/", False))
    assert numeric[4:] == [gc.BUSYBOX, "nsenter", "-S", "4242", "-G", "7", "--", "/app", "a b"]


TRICKY = [
    "redis-server",
    "two words",
    "back\\slash",
    "new\nline",
    "",
    "  lead",
    "trail\n",
    "\\n",
    "tab\there",
    "$(x) `y` *",
]


def test_config_round_trips_every_value():
    text = gc.workload_config(TRICKY, "/var/lib/my dir", 6379, "explorer-1")
    assert all(line.count("\n") == 0 for line in text.splitlines())
    parsed = gc.parse_config(text)
    assert parsed["arg"] == TRICKY
    assert parsed["workdir"] == ["/var/lib/my dir"] and parsed["port"] == ["6379"]


def guest_reader(conf: Path) -> str:
    """The config-reading part of the guest init, as busybox runs it, printing the argv."""
    init = guest_files()["init.sh"]
    decode = init[init.index("decode() {") : init.index("listening() {")]
    start = init.index("port=0 workdir=/")
    loop = init[start : init.index('[ "$#" -gt 0 ]', start)]
    return f'CONF={conf}\n{decode}\n{loop}\nprintf "%s\\0" "$@"\nprintf "%s\\0" "$workdir" "$port" "$host"\n'


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static is not installed (scripts/setup-host)")
def test_the_guest_shell_decodes_the_config_exactly(tmp_path):
    conf = tmp_path / "workload.conf"
    conf.write_text(gc.workload_config(TRICKY, "/w d", 80, "h"))
    out = subprocess.run(["/bin/busybox", "sh", "-c", guest_reader(conf)], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == TRICKY + ["/w d", "80", "h"]


def test_executables_are_found_in_the_image_not_on_the_host(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/lib/redis").mkdir(parents=True)
    (tmp_path / "etc/alternatives").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    real = tmp_path / "usr/lib/redis/server"
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    (tmp_path / "etc/alternatives/redis-server").symlink_to("/usr/lib/redis/server")  # absolute: in the image
    (tmp_path / "usr/bin/redis-server").symlink_to("/etc/alternatives/redis-server")
    (tmp_path / "usr/bin/notexec").write_text("x")
    assert gc.find_executable(tmp_path, "redis-server", "/usr/local/bin:/bin") == "/bin/redis-server"
    assert gc.resolve_in_root(tmp_path, "/bin/redis-server") == real
    assert gc.find_executable(tmp_path, "./run.sh", "/bin") == "./run.sh"
    with pytest.raises(BuildError, match="'notexec' is not in the image's PATH"):
        gc.find_executable(tmp_path, "notexec", "/usr/bin")


def test_cache_key_changes_with_each_input_and_only_then():
    base = {"image_id": "sha256:a", "kernel_version": "6.1", "scripts": {"init.sh": "x"}, "override": (), "port": 6379}
    key = cache_key(**base)
    assert key == cache_key(**base)
    for change in (
        {"image_id": "sha256:b"},
        {"kernel_version": "6.2"},
        {"scripts": {"init.sh": "y"}},
        {"override": ("redis-server",)},
        {"port": 1},
    ):
        assert cache_key(**{**base, **change}) != key, change


def test_disk_size_leaves_headroom_in_whole_64_mib():
    mib = 1024 * 1024
    assert disk_size(0) == 256 * mib
    assert disk_size(130 * mib) % (64 * mib) == 0 and disk_size(130 * mib) >= 130 * mib * 1.3 + 256 * mib


def test_initramfs_holds_init_busybox_console_and_modules_in_order():
    members = cpio_members(initramfs_archive(b"BB", [("virtio", b"\x7fELF1"), ("ext4", b"\x7fELF2")]))
    assert members["init"][1] == INIT.encode() and members["init"][0] & 0o111
    assert members["dev/console"][0] & 0o170000 == 0o020000 and members["dev/console"][2:] == (5, 1)
    assert members["modules/order"][1] == b"virtio.ko\next4.ko\n"
    assert members["modules/ext4.ko"][1] == b"\x7fELF2"


@pytest.mark.skipif(not shutil.which("cpio"), reason="cpio is not installed")
def test_initramfs_is_readable_by_cpio(tmp_path):
    packed = gzip.compress(initramfs_archive(b"BB", [("virtio", b"x")]))
    listing = subprocess.run(["cpio", "-it"], input=gzip.decompress(packed), capture_output=True, check=True).stdout
    assert {"init", "bin/busybox", "dev/console", "modules/order"} <= set(listing.decode().split())


def test_a_dynamic_executable_is_told_apart_from_a_static_one():
    assert has_interpreter(Path(sys.executable).resolve().read_bytes()[:65536])  # python is dynamic
    assert not has_interpreter(kvm.static_elf(b"\xf4"))  # one PT_LOAD, no PT_INTERP: static


def elf_with_note(name: bytes, note_type: int) -> bytes:
    """A minimal ELF64 with one PT_NOTE program header."""
    note = struct.pack("<III", len(name) + 1, 4, note_type) + name + b"\0" * (4 - len(name) % 4) + b"\0" * 4
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)
    struct.pack_into("<HH", header, 0x36, 56, 1)
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 120, 0, 0, len(note), len(note), 4)
    return bytes(header) + phdr + note


def test_pvh_entry_is_found_in_the_kernels_notes():
    assert has_pvh_entry(elf_with_note(b"Xen", 18))
    assert not has_pvh_entry(elf_with_note(b"Xen", 17))
    assert not has_pvh_entry(elf_with_note(b"GNU", 18))


def test_marks_parse_with_their_values_and_first_occurrence_wins():
    console = (
        "[    0.000000] Linux version 6.1\r\nEXPLORER-MARK init uptime_s=2.40\r\n"
        "noise EXPLORER-MARK workload uptime_s=2.61 pid=149\nEXPLORER-MARK init uptime_s=9\n"
    )
    assert parse_marks(console) == {"init": {"uptime_s": "2.40"}, "workload": {"uptime_s": "2.61", "pid": "149"}}


def tiny_rootfs_tar(path: Path, executable: bool = True) -> Path:
    """A rootfs tarball with a user, an owned directory and (or not) an executable."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, kind: bytes = tarfile.REGTYPE) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.size = kind, mode, uid, uid, len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for directory in ("etc", "usr", "usr/bin", "srv"):
            add(directory, mode=0o755, kind=tarfile.DIRTYPE)
        add("srv/data", mode=0o700, uid=100, kind=tarfile.DIRTYPE)
        add("etc/passwd", b"root:x:0:0::/root:/bin/sh\napp:x:100:100::/srv/data:/bin/sh\n")
        add("etc/group", b"root:x:0:\napp:x:100:\n")
        add("usr/bin/server", b"#!/bin/sh\n", 0o755 if executable else 0o644)
    return path


BUILD_TOOLS = all(shutil.which(tool) for tool in ("mke2fs", "qemu-img", "tar")) and Path("/bin/busybox").exists()


@pytest.mark.skipif(not BUILD_TOOLS or os.geteuid() != 0, reason="needs root, mke2fs, qemu-img, tar, busybox-static")
def test_a_disk_is_built_from_a_rootfs_tarball_and_temp_files_go(tmp_path, monkeypatch):
    from explorer import scenario as scenario_module
    from explorer.images.microvm import vm_image
    from explorer.images.rootfs.busybox import static_busybox
    from explorer.model import Artifact

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    scenario = scenario_module.load("redis")
    facts = {"image_id": "sha256:tiny", "command": ["server", "--flag"], "user": "app", "workdir": "/srv/data"}
    artifact = Artifact("tiny", facts, {"rootfs_tar": str(tiny_rootfs_tar(tmp_path / "ok.tar"))})
    disk = tmp_path / "tiny.qcow2"
    vm_image._build_disk(None, scenario, artifact, "k" * 24, disk, static_busybox())
    info = subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, text=True, check=True)
    assert '"format": "qcow2"' in info.stdout
    assert "-c\n100:100" in "\n".join(
        gc.parse_config(json.loads(disk.with_suffix(".json").read_text())["config"])["arg"]
    )
    assert not any((tmp_path / "cache" / "tmp").iterdir())

    broken = Artifact("tiny", facts, {"rootfs_tar": str(tiny_rootfs_tar(tmp_path / "bad.tar", executable=False))})
    with pytest.raises(BuildError, match="'server' is not in the image's PATH"):
        vm_image._build_disk(None, scenario, broken, "b" * 24, tmp_path / "bad.qcow2", static_busybox())
    assert not (tmp_path / "bad.qcow2").exists() and not any((tmp_path / "cache" / "tmp").iterdir())


def test_a_failing_build_tool_becomes_a_build_error_with_its_stderr():
    with pytest.raises(BuildError, match="(?s)making the disk failed.*no space left here"):
        run_tool([sys.executable, "-c", "import sys; sys.exit('no space left here')"], "making the disk")
    with pytest.raises(BuildError, match="not installed"):
        run_tool(["explorer-no-such-tool"], "making the disk")


@pytest.mark.skipif(not shutil.which("apt-get"), reason="not a Debian host")
def test_a_kernel_that_cannot_be_downloaded_says_so_with_a_hint(tmp_path):
    from explorer.images.microvm import kernel

    with pytest.raises(BuildError, match="downloading linux-image-explorer-none") as caught:
        kernel._download_and_extract("linux-image-explorer-none", "amd64", tmp_path)
    assert "apt-get download linux-image-amd64" in (caught.value.hint or "")


UBUNTU_POLICY = ""  # Ubuntu: apt-cache policy linux-image-amd64 prints nothing, exit 0
DEBIAN_POLICY = """\
linux-image-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.1.192-2 500
"""
NO_CANDIDATE_POLICY = "linux-image-amd64:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n"


def test_the_kernel_comes_from_the_hosts_apt_only_where_it_has_debians_metapackage():
    from explorer.images.microvm.kernel import choose_source, has_candidate

    assert has_candidate(DEBIAN_POLICY)
    assert not has_candidate(UBUNTU_POLICY) and not has_candidate(NO_CANDIDATE_POLICY)
    assert choose_source(None, DEBIAN_POLICY) == "host"
    assert choose_source(None, UBUNTU_POLICY) == "debian"
    assert choose_source(None, NO_CANDIDATE_POLICY) == "debian"
    assert choose_source(None, None) == "debian"  # no apt-cache at all
    assert choose_source("debian", DEBIAN_POLICY) == "debian"  # the override wins
    assert choose_source("host", UBUNTU_POLICY) == "host"
    with pytest.raises(BuildError, match="EXPLORER_KERNEL_SOURCE"):
        choose_source("ubuntu", DEBIAN_POLICY)


def test_the_private_debian_sources_never_touch_the_hosts_apt(tmp_path, monkeypatch):
    from explorer.images.microvm.kernel import debian_apt_options

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    options = debian_apt_options("amd64")
    settings = dict(value.split("=", 1) for value in options[1::2])
    assert all(flag == "-o" for flag in options[::2])
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::Cache"):
        assert settings[key].startswith(str(tmp_path)), key
    sources = Path(settings["Dir::Etc::SourceList"]).read_text()
    assert (
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://deb.debian.org/debian bookworm main" in sources
    )
    assert "debian-security bookworm-security main" in sources


def test_a_build_tool_that_hangs_becomes_a_build_error():
    with pytest.raises(BuildError, match="did not finish in 1s"):
        run_tool([sys.executable, "-c", "import time; time.sleep(5)"], "waiting", timeout=1)
