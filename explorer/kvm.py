"""Whether KVM really runs guests on this host, proven by booting one, and remembered.

`/dev/kvm` existing and opening is not proof. On hosts whose KVM is a paravirtual flavour
(kvm_pvm, nested setups), a tiny bare-metal payload even runs while a stock Linux kernel
hangs right after its real-mode setup code. So the test boots a real Linux kernel (the
VM image's own when there is one) with a 1 KiB initramfs whose /init prints a marker and
powers off, under `-accel kvm`, and gives up after a few seconds (killing qemu's whole
process group). A verdict is cached per host boot, host kernel, QEMU and guest kernel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import platform
import pwd
import select
import shutil
import signal
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from explorer.cache import cache_dir
from explorer.cpio import Cpio

QEMU = "qemu-system-x86_64"
MARKER = b"EXPLORER-KVM-PROBE-OK"
DEFAULT_TIMEOUT_S = 10.0
CMDLINE = "console=ttyS0 panic=-1 quiet rdinit=/init"
# /init, x86-64: write(1, "\nEXPLORER-KVM-PROBE-OK\n", 23);
# reboot(0xfee1dead, 672274793, LINUX_REBOOT_CMD_POWER_OFF); for (;;);
INIT_CODE = (
    bytes.fromhex(
        "b801000000bf01000000488d3522000000ba170000000f05b8a9000000bfaddee1febe69191228badcfe21434531d20f05ebfe"
    )
    + b"\n"
    + MARKER
    + b"\n"
)
LOAD_ADDRESS = 0x400000


@dataclass(frozen=True)
class KvmVerdict:
    usable: bool
    reason: str
    checked_at: str  # ISO 8601, UTC: when the boot test ran
    cached: bool = False


def kvm_usable(
    timeout_s: float = DEFAULT_TIMEOUT_S, kernel: Path | str | None = None, refresh: bool = False
) -> KvmVerdict:
    """The cached verdict for this host, or a fresh boot test (a few seconds at most)."""
    quick = _quick_refusal()
    if quick:
        return _verdict(False, quick)
    probe_kernel = Path(kernel) if kernel else find_kernel()
    if probe_kernel is None:
        return _verdict(False, "no guest kernel to boot-test KVM with yet (TCG until one is cached)")
    key = host_key(probe_kernel)
    path = _verdict_path(key)
    with _locked(path):
        if not refresh:
            remembered = _read_cached(path, key)
            if remembered is not None:
                return remembered
        usable, reason = boot_test(probe_kernel, timeout_s)
        verdict = _verdict(usable, reason)
        _write_cached(path, key, verdict)
    return verdict


def cached_verdict(kernel: Path | str | None = None) -> KvmVerdict | None:
    """The remembered verdict for this host, without running a boot test (None if none)."""
    if _quick_refusal():
        return _verdict(False, _quick_refusal() or "")
    probe_kernel = Path(kernel) if kernel else find_kernel()
    if probe_kernel is None:
        return None
    key = host_key(probe_kernel)
    return _read_cached(_verdict_path(key), key)


def _verdict_path(key: dict[str, str]) -> Path:
    return cache_dir("kvm") / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]}.json"


def _verdict(usable: bool, reason: str) -> KvmVerdict:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return KvmVerdict(usable=usable, reason=reason, checked_at=now, cached=False)


def _quick_refusal() -> str | None:
    """Reasons that need no boot test: no /dev/kvm, no access to it, no QEMU."""
    if platform.machine() != "x86_64":
        return f"the KVM boot test is written for x86_64, not {platform.machine()}"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"/dev/kvm cannot be opened ({exc.strerror})"
    os.close(fd)
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed"
    return None


def device_usable_by(uid: int, gid: int, device: str = "/dev/kvm") -> bool:
    """Whether uid:gid may open the KVM device read-write (by its mode bits). libvirt asks
    the same for QEMU's user and, if the answer contradicts its cached QEMU capabilities,
    probes QEMU again at every capabilities lookup: several times per domain start."""
    try:
        info = os.stat(device)
    except OSError:
        return True  # no device: nothing for libvirt to contradict
    try:  # the user's own and supplementary groups count too (Debian's libvirt-qemu is in kvm)
        user = pwd.getpwuid(uid)
        groups = {gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    except KeyError:
        groups = {gid}
    bits = info.st_mode >> 6 if info.st_uid == uid else info.st_mode >> 3 if info.st_gid in groups else info.st_mode
    return uid == 0 or bits & 0o6 == 0o6


def find_kernel() -> Path | None:
    """A Linux kernel to boot: the newest one explorer cached (its PVH vmlinux first: what the
    VM side boots when there is one), else the host's own if readable."""

    def newest(pattern: str) -> list[Path]:
        return sorted(cache_dir("kernel").glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)

    cached = newest("*/vmlinux") + newest("*/vmlinuz")
    host = Path(f"/boot/vmlinuz-{platform.release()}")
    for candidate in [*cached, host]:
        if os.access(candidate, os.R_OK):
            return candidate
    return None


def host_key(kernel: Path) -> dict[str, str]:
    """What a verdict depends on: this boot of this host kernel, this QEMU, this guest kernel."""
    return {
        "host_kernel": platform.release(),
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "qemu": qemu_version(),
        "guest_kernel": _file_identity(kernel),
    }


def _file_identity(path: Path) -> str:
    """The file as this filesystem identifies it (device, inode, size, mtime): a rebuilt or
    replaced kernel differs, and it costs a stat, not a hash of 30 MB on every run."""
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def qemu_version() -> str:
    """QEMU's own first line of --version, asked once per binary (its path, size and mtime)."""
    path = shutil.which(QEMU)
    if path is None:
        return "unknown"
    stat = os.stat(path)
    return _qemu_version(path, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _qemu_version(path: str, size: int, mtime_ns: int) -> str:
    try:
        out = subprocess.run([path, "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One boot test at a time per key: a second caller waits and then reads the cache."""
    with open(path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_cached(path: Path, key: dict[str, str]) -> KvmVerdict | None:
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        return KvmVerdict(**{**data["verdict"], "cached": True})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_cached(path: Path, key: dict[str, str], verdict: KvmVerdict) -> None:
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"key": key, "verdict": asdict(verdict)}, indent=1))
    os.replace(partial, path)


def boot_test(kernel: Path, timeout_s: float, accel: str = "kvm") -> tuple[bool, str]:
    """Boot `kernel` with the marker initramfs; (True, why) once the marker is printed."""
    initramfs = probe_initramfs()
    argv = [
        QEMU,
        "-accel",
        accel,
        "-m",
        "128",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initramfs),
        "-append",
        CMDLINE,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        seen = _read_until(proc, MARKER, started + timeout_s)
    finally:
        _kill_group(proc)
    took = time.monotonic() - started
    if MARKER in seen:
        return True, f"a Linux guest reached userspace under {accel} in {took:.1f}s"
    last = _last_line(seen)
    if proc.returncode not in (None, -signal.SIGKILL) and took < timeout_s:
        return False, f"qemu -accel {accel} exited with {proc.returncode}: {last or 'no output'}"
    return False, f"a Linux guest under {accel} did not reach userspace within {timeout_s:.0f}s" + (
        f" (last output: {last!r})" if last else " (it printed nothing)"
    )


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, deadline: float) -> bytes:
    """Everything qemu printed until the marker, its exit, or the deadline."""
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
    return seen


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _last_line(output: bytes) -> str:
    text = output.decode(errors="replace").replace("\x1b", "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and "warning:" not in line]
    return lines[-1][-160:] if lines else ""


def probe_initramfs() -> Path:
    """The marker initramfs (a cpio with /dev/console and /init), written once to the cache."""
    out = cache_dir("kvm") / f"probe-{hashlib.sha256(INIT_CODE).hexdigest()[:12]}.cpio"
    if not out.exists():
        partial = out.with_suffix(f".{os.getpid()}.tmp")
        archive = Cpio()
        archive.directory("dev")
        archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        archive.file("init", static_elf(INIT_CODE), 0o755)
        partial.write_bytes(archive.finish())
        os.replace(partial, out)
    return out


def static_elf(code: bytes, base: int = LOAD_ADDRESS) -> bytes:
    """A static x86-64 ELF executable: one R+X segment mapping the whole file."""
    ehdr_size, phdr_size = 64, 56
    total = ehdr_size + phdr_size + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        ident,
        2,
        0x3E,
        1,
        base + ehdr_size + phdr_size,
        ehdr_size,
        0,
        0,
        ehdr_size,
        phdr_size,
        1,
        0,
        0,
        0,
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    return ehdr + phdr + code
