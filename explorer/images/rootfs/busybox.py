"""The host's static busybox, which explorer puts into a root filesystem (the microVM's init,
the native reference's chroot) and into the microVM's initramfs."""

from __future__ import annotations

import struct
from pathlib import Path

from explorer.errors import BuildError

BUSYBOX = Path("/bin/busybox")


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
