"""Two sizes for what every side starts from, each with its method, so that images compare like
for like:

- content: what the image holds, unpacked. A container image's `Size` as Docker reports it
  (its layers unpacked); for a VM, the bytes in use in its ext4 filesystem (the superblock's
  block count less its free blocks, as `dumpe2fs -h` reads them from the raw disk), plus the
  kernel and initramfs it boots.
- stored: what it costs to keep or ship. A container image's layers gzip-compressed as a
  registry stores them (each layer tar of `docker save`, compressed at gzip's default level 6,
  plus the image's config); for a VM, the qcow2 file as written (compressed or not, said), plus
  the kernel and initramfs files.

Both are measured, never estimated, and cached beside what they measure: the filesystem's
figures when the disk is built (or, for a disk cached by an older explorer, once, from a raw
copy), the compressed layers by image id.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from explorer.cache import cache_dir
from explorer.errors import BuildError
from explorer.tools import run_tool

GZIP_LEVEL = 6  # gzip's and Go's compress/gzip default: what `docker push` and `gzip -c` use


def filesystem_in_use(raw: Path) -> dict[str, int]:
    """The ext4 filesystem on `raw` (a raw disk image, no partition table), as its superblock
    says: block size and count, free blocks, bytes in use (metadata and journal included)."""
    out = run_tool(["dumpe2fs", "-h", str(raw)], f"reading the filesystem of {raw.name}").stdout
    fields = dict(re.findall(r"^(Block count|Free blocks|Block size):\s+(\d+)$", out, flags=re.MULTILINE))
    if len(fields) != 3:
        raise BuildError(f"dumpe2fs -h {raw} did not say the block count, free blocks and block size")
    count, free, size = (int(fields[key]) for key in ("Block count", "Free blocks", "Block size"))
    return {"fs_block_bytes": size, "fs_blocks": count, "fs_free_blocks": free, "fs_used_bytes": (count - free) * size}


def qcow2_filesystem_in_use(disk: Path) -> dict[str, int]:
    """filesystem_in_use of a qcow2 disk, through a sparse raw copy in the cache's tmp."""
    with tempfile.TemporaryDirectory(dir=cache_dir("tmp"), prefix=f"explorer-fs-{disk.stem}-") as tmp:
        raw = Path(tmp) / "disk.raw"
        run_tool(["qemu-img", "convert", "-q", "-O", "raw", str(disk), str(raw)], f"reading {disk.name} as raw")
        return filesystem_in_use(raw)


def cached_filesystem(disk: Path, meta: Path) -> dict[str, int]:
    """The filesystem figures recorded in `meta` (a JSON file beside the disk) when it was built;
    measured once and recorded there for a disk an older explorer built."""
    recorded = json.loads(meta.read_text()) if meta.is_file() else {}
    if "fs_used_bytes" not in recorded:
        recorded.update(qcow2_filesystem_in_use(disk))
        meta.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return {key: int(recorded[key]) for key in ("fs_block_bytes", "fs_blocks", "fs_free_blocks", "fs_used_bytes")}


def file_bytes(path: Path) -> int:
    """The bytes a file holds: its size, less the holes of a sparse one (the microVM's vmlinux
    is written with holes where its image is zeros: 31.6 MiB of data in 62.9 MiB)."""
    stat = path.stat()
    return min(stat.st_size, stat.st_blocks * 512)


def disk_info(disk: Path) -> dict[str, Any]:
    """`qemu-img info` of a cached disk (its format and virtual size), asked once per disk file
    (its size and mtime) and kept beside it: a run reads it instead of starting qemu-img."""
    stat = disk.stat()
    kept = disk.with_name(f".{disk.name}.info.json")
    identity = [stat.st_size, stat.st_mtime_ns]
    try:
        recorded = json.loads(kept.read_text())
        if recorded.get("identity") == identity:
            return recorded["info"]
    except (OSError, ValueError, KeyError):
        pass
    info = json.loads(run_tool(["qemu-img", "info", "--output=json", str(disk)], f"reading {disk.name}").stdout)
    try:
        kept.write_text(json.dumps({"identity": identity, "info": info}) + "\n")
    except OSError:
        pass  # a read-only cache: asked again next time
    return info


def vm_sizes(
    fs: dict[str, int], disk: Path, kernel: Path, initramfs: Path, compressed: bool, kernel_what: str = "kernel"
) -> dict[str, Any]:
    """A VM image's content and stored figures, each with its parts and method."""
    kernel_bytes, initramfs_bytes, disk_bytes = (file_bytes(p) for p in (kernel, initramfs, disk))
    content = {"filesystem": fs["fs_used_bytes"], "kernel": kernel_bytes, "initramfs": initramfs_bytes}
    stored = {"qcow2": disk_bytes, "kernel": kernel_bytes, "initramfs": initramfs_bytes}
    return {
        "content_bytes": sum(content.values()),
        "content_parts": content,
        "content_method": f"ext4 blocks in use (dumpe2fs -h: block count - free blocks) + {kernel_what} + initramfs",
        "stored_bytes": sum(stored.values()),
        "stored_parts": stored,
        "stored_method": f"the qcow2 file ({'zlib-compressed clusters' if compressed else 'uncompressed'})"
        f" + {kernel_what} + initramfs",
        "fs_used_bytes": fs["fs_used_bytes"],
    }


def container_sizes(client: Any, image: Any) -> dict[str, Any]:
    """A container image's content (Docker's Size) and stored figures (its layers, gzip'd),
    the latter measured once per image id and cached."""
    stored = _layers_gzipped(client, image)
    return {
        "content_bytes": image.attrs.get("Size"),
        "content_method": "Docker's Size (docker image inspect): its layers unpacked",
        "stored_bytes": stored["layers_gzip_bytes"] + stored["config_bytes"],
        "stored_parts": {"layers (gzip)": stored["layers_gzip_bytes"], "config": stored["config_bytes"]},
        "stored_method": f"each layer tar of docker save gzip-compressed (level {GZIP_LEVEL}), as a registry "
        "stores it, plus the image config",
        "layers_tar_bytes": stored["layers_tar_bytes"],
    }


def _layers_gzipped(client: Any, image: Any) -> dict[str, int]:
    path = cache_dir("sizes") / f"{image.id.replace(':', '-')}.json"
    if path.is_file():
        return json.loads(path.read_text())
    figures = {"layers_gzip_bytes": 0, "layers_tar_bytes": 0, "config_bytes": 0, "layers": 0}
    try:
        stream = io.BufferedReader(_Chunks(client.api.get_image(image.id)), buffer_size=1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                if member.name.endswith("/layer.tar") or member.name.startswith("blobs/"):
                    tar_bytes, gzip_bytes = _gzip_size(handle)
                    figures["layers"] += 1
                    figures["layers_tar_bytes"] += tar_bytes
                    figures["layers_gzip_bytes"] += gzip_bytes
                elif member.name.endswith(".json") and member.name not in ("manifest.json", "index.json"):
                    figures["config_bytes"] += member.size
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(f"could not read docker save of {image.id}: {exc}") from exc
    path.write_text(json.dumps(figures) + "\n")
    return figures


def _gzip_size(handle: Any) -> tuple[int, int]:
    """(bytes in, bytes out) of `handle` through gzip at GZIP_LEVEL, streamed."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip container
    read = written = 0
    while chunk := handle.read(1 << 20):
        read += len(chunk)
        written += len(compressor.compress(chunk))
    return read, written + len(compressor.flush())


class _Chunks(io.RawIOBase):
    """A raw reader over an iterator of byte chunks (the SDK's streamed docker save)."""

    def __init__(self, chunks: Any) -> None:
        self.chunks, self.left = iter(chunks), memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.left:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.left = memoryview(chunk)
        size = min(len(buffer), len(self.left))
        buffer[:size] = self.left[:size]
        self.left = self.left[size:]
        return size
