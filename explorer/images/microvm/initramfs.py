"""A small initramfs: static busybox, the kernel's virtio and ext4 modules, and an /init
that mounts the disk and hands over to the disk's own init.

Debian's stock initramfs (36 MB, udev) made a TCG guest ~2x slower to reach its workload;
this one holds ~5 MB and waits for nothing but the disk device node.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import stat
import struct
from pathlib import Path

from explorer.errors import BuildError
from explorer.images import cache_dir
from explorer.images.microvm.kernel import Kernel, module_name

BUSYBOX = Path("/bin/busybox")
GUEST_INIT = "/.explorer/init"
# Runs as PID 1 from the initramfs. Module names come from /modules/order, the root device
# from the kernel command line (root=, default /dev/vda).
INIT = r"""#!/bin/busybox sh
export PATH=/bin
busybox mount -t proc proc /proc
read -r up _ < /proc/uptime
echo "EXPLORER-MARK initramfs uptime_s=$up"
fail() {
  read -r up _ < /proc/uptime
  echo "EXPLORER-MARK initramfs-error uptime_s=$up $1"
  busybox poweroff -f
  while :; do busybox sleep 3600; done
}
root=/dev/vda
for arg in $(busybox cat /proc/cmdline); do
  case "$arg" in root=/dev/*) root=${arg#root=} ;; esac
done
busybox mount -t devtmpfs devtmpfs /dev || fail "mount=devtmpfs"
while read -r module; do
  busybox insmod "/modules/$module" || fail "insmod=$module"
done < /modules/order
tries=0
while [ ! -b "$root" ]; do
  tries=$((tries + 1))
  [ "$tries" -gt 1000 ] && fail "no-device=$root"
  busybox usleep 10000
done
busybox mount -t ext4 -o rw "$root" /root || fail "mount=$root"
[ -x /root/.explorer/init ] || fail "no-init=/.explorer/init"
busybox umount /dev
busybox umount /proc
exec busybox switch_root /root /.explorer/init
"""


def static_busybox(path: Path = BUSYBOX) -> Path:
    """The host's busybox, if it is a static binary (it runs in the initramfs and in any image)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"{path} is missing", hint="apt-get install busybox-static (scripts/setup-host)") from exc
    if has_interpreter(data):
        raise BuildError(
            f"{path} is dynamically linked: it cannot run in an initramfs or an arbitrary image",
            hint="apt-get install busybox-static (it replaces Debian's dynamic busybox)",
        )
    return path


def has_interpreter(elf: bytes) -> bool:
    """Whether an ELF file asks for a dynamic loader (a PT_INTERP program header)."""
    if elf[:4] != b"\x7fELF":
        raise BuildError("busybox is not an ELF executable")
    wide, endian = elf[4] == 2, "<" if elf[5] == 1 else ">"
    if wide:
        (phoff,) = struct.unpack_from(endian + "Q", elf, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", elf, 0x36)
    else:
        (phoff,) = struct.unpack_from(endian + "I", elf, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", elf, 0x2A)
    for index in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", elf, phoff + index * phentsize)
        if p_type == 3:  # PT_INTERP
            return True
    return False


def module_bytes(path: Path) -> bytes:
    """A module as busybox insmod can load it: decompressed (.ko.xz, .ko.gz) in Python."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko"):
        return data
    raise BuildError(f"cannot decompress kernel module {path.name} (only .ko, .ko.xz, .ko.gz)")


class Cpio:
    """A newc ("070701") archive written in memory: the format the kernel unpacks."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.inode = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self.parts += [header, encoded, _pad(len(header) + len(encoded)), data, _pad(len(data))]
        self.inode += 1

    def directory(self, name: str) -> None:
        self.add(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.add(name, stat.S_IFREG | mode, data)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.parts)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 4)


def initramfs_archive(busybox: bytes, modules: list[tuple[str, bytes]], init: str = INIT) -> bytes:
    """The uncompressed cpio: /init, /bin/busybox, /modules/<name>.ko + /modules/order, /dev/console."""
    archive = Cpio()
    for directory in ("bin", "dev", "proc", "sys", "root", "modules"):
        archive.directory(directory)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))  # the kernel opens it for /init
    archive.file("bin/busybox", busybox, 0o755)
    archive.file("init", init.encode(), 0o755)
    for name, data in modules:
        archive.file(f"modules/{name}.ko", data)
    archive.file("modules/order", "".join(f"{name}.ko\n" for name, _ in modules).encode())
    return archive.finish()


def ensure_initramfs(kernel: Kernel) -> Path:
    """The cached initramfs for `kernel`, keyed by the hash of everything it contains."""
    busybox = static_busybox().read_bytes()
    modules = [(module_name(str(path)), module_bytes(path)) for path in kernel.modules]
    digest = hashlib.sha256(INIT.encode() + busybox)
    for name, data in modules:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    out = cache_dir("initramfs") / f"{digest.hexdigest()[:16]}.cpio.gz"
    if out.exists():
        return out
    packed = gzip.compress(initramfs_archive(busybox, modules), compresslevel=9, mtime=0)
    partial = out.with_suffix(f".{os.getpid()}.tmp")
    try:
        partial.write_bytes(packed)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
