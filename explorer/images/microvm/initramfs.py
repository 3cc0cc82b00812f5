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
from pathlib import Path

from explorer.cache import cache_dir
from explorer.cpio import Cpio
from explorer.errors import BuildError
from explorer.images.microvm.kernel import Kernel, module_name
from explorer.images.rootfs.busybox import static_busybox

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
