"""Debian's own kernel for the VM side, fetched with apt and cached.

On a Debian host the host's apt sources are used. Where they have no `linux-image-<arch>`
(Ubuntu: other names, modules split across packages) apt runs against a private Debian
sources list and package lists kept in the cache, so the kernel is Debian's either way.

The VM boots the distribution kernel a user would run, not a kernel tuned for speed, so
boot times measure what a normal Debian guest costs. Only `vmlinuz`, the modules a
virtio + ext4 guest needs and modules.dep are kept (the whole tree is ~400 MB).
"""

from __future__ import annotations

import json
import lzma
import os
import platform
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from explorer.cache import cache_dir
from explorer.errors import BuildError
from explorer.images import partials
from explorer.tools import run_tool as _run

DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# What a guest with a virtio disk and NIC and an ext4 root must load; their dependencies
# (virtio, virtio_ring, jbd2, mbcache, ...) come from modules.dep.
# virtio_rng feeds the guest's entropy pool from the host: without it, getrandom() blocks a
# freshly booted TCG guest's workload (Redis) for ~1.5 s until the kernel's jitter entropy
# is enough.
# virtio_console carries the host's requests for a guest view and the views themselves (a
# virtio-serial port, explorer.view): asked for when the host wants one, not printed on a timer.
ROOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console", "ext4")
# ext4 asks the crypto API for crc32c when it mounts (a soft dependency modules.dep does not
# list); the generic implementation works on any CPU model the VM is given.
SOFT_MODULES = ("crc32c_generic",)
MODULE_SUFFIXES = (".ko.xz", ".ko.gz", ".ko.zst", ".ko")
KEPT_FILE = "kept.json"
KEPT_FORMAT = 2  # bump when what is kept changes: older caches are rebuilt
APT_LISTS = "/var/lib/apt/lists"
HINT = (
    "the VM side boots Debian's kernel package from this host's apt sources: check that "
    "`apt-get download linux-image-{arch}` works (apt-get update, the Debian mirror reachable)"
)
# The private Debian sources used where the host's apt has no Debian kernel. bookworm and its
# security suite: the suite the scenarios' rootfs uses, and where the newest 6.1 kernel lives.
DEBIAN_SOURCES = (
    ("http://deb.debian.org/debian", "bookworm bookworm-updates"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
)
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_LISTS_MAX_AGE_S = 24 * 3600  # refresh the private lists at most daily
SOURCE_ENV = "EXPLORER_KERNEL_SOURCE"  # "host" or "debian" forces a source; unset: detect
DEBIAN_HINT = (
    "this host's apt has no linux-image-{arch}, so the kernel comes from deb.debian.org with a "
    "private sources list: check that the mirror is reachable and that debian-archive-keyring is "
    "installed (scripts/setup-host installs it)"
)


@dataclass(frozen=True)
class Kernel:
    """A cached kernel: the image to boot and the modules the initramfs loads, in order."""

    version: str
    vmlinuz: Path
    modules: tuple[Path, ...]
    boot_image: Path  # what to boot: vmlinux when it has a PVH entry point, else vmlinuz


def debian_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    if machine not in DEBIAN_ARCH:
        raise BuildError(f"no Debian kernel for this host's architecture {machine!r}")
    return DEBIAN_ARCH[machine]


def module_name(path: str) -> str:
    """`kernel/fs/ext4/ext4.ko.xz` -> `ext4`, the name modprobe and modules.builtin use."""
    base = path.rsplit("/", 1)[-1]
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep lines (`path: dep dep ...`) -> {path: [dep paths]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        path, sep, rest = line.partition(":")
        if sep and path.strip():
            deps[path.strip()] = rest.split()
    return deps


def load_order(dep_text: str, roots: tuple[str, ...], builtin: frozenset[str] = frozenset()) -> list[str]:
    """Module paths for `roots` and everything they depend on, each after its dependencies.

    Roots built into the kernel (modules.builtin) are skipped; an unknown root is an error.
    """
    deps = parse_modules_dep(dep_text)
    by_name = {module_name(path): path for path in deps}
    order: list[str] = []

    def visit(path: str, stack: tuple[str, ...]) -> None:
        if path in order or path in stack:
            return
        for dep in deps.get(path, []):
            visit(dep, stack + (path,))
        order.append(path)

    for root in roots:
        if root in builtin:
            continue
        if root not in by_name:
            raise BuildError(f"the kernel has no module {root!r} (not in modules.dep nor built in)")
        visit(by_name[root], ())
    return order


def has_candidate(policy: str) -> bool:
    """Whether `apt-cache policy PKG` output offers a version to install (Ubuntu: no
    `linux-image-amd64` at all, so empty output or `Candidate: (none)`)."""
    for line in policy.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            return value.strip() not in ("", "(none)")
    return False


def choose_source(override: str | None, policy: str | None) -> str:
    """ "host" (the host's apt sources) or "debian" (a private Debian sources list).

    An override ($EXPLORER_KERNEL_SOURCE) wins; otherwise the host's apt is used when it has
    a candidate for the metapackage, since it needs no extra package lists; `policy` is None
    when there is no apt-cache to ask.
    """
    if override:
        if override not in ("host", "debian"):
            raise BuildError(f"{SOURCE_ENV}={override!r}: expected 'host' or 'debian'")
        return override
    return "host" if policy is not None and has_candidate(policy) else "debian"


def _host_policy(meta: str) -> str | None:
    if not shutil.which("apt-cache"):
        return None
    done = subprocess.run(["apt-cache", "policy", meta], check=False, capture_output=True, text=True, timeout=120)
    return done.stdout if done.returncode == 0 else ""


def debian_apt_options(arch: str) -> list[str]:
    """apt options that point apt-get/apt-cache at Debian's archive, with package lists and
    caches under the explorer cache (writable without root, never touching the host's)."""
    base = cache_dir("kernel", "debian-apt")
    etc = base / "etc"
    (etc / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    lines = [
        f"deb [arch={arch} signed-by={DEBIAN_KEYRING}] {uri} {suite} main"
        for uri, suites in DEBIAN_SOURCES
        for suite in suites.split()
    ]
    sources = etc / "sources.list"
    text = "\n".join(lines) + "\n"
    if not sources.exists() or sources.read_text() != text:
        sources.write_text(text)
    return [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        f"Dir::Etc::SourceParts={etc / 'sources.list.d'}",
        "-o",
        f"Dir::State::Lists={base / 'lists'}",
        "-o",
        f"Dir::Cache={base / 'cache'}",
        "-o",
        "Acquire::Languages=none",
    ]


def _debian_lists(arch: str) -> tuple[list[str], str]:
    """The private apt options and the lists' stamp, running `apt-get update` when the lists
    are missing or a day old. A failed refresh keeps older lists (offline: the cached kernel
    for their version is still found); with no lists at all it is an error."""
    hint = DEBIAN_HINT.format(arch=arch)
    if not Path(DEBIAN_KEYRING).exists():
        raise BuildError(f"{DEBIAN_KEYRING} is missing: Debian's archive cannot be verified", hint=hint)
    options = debian_apt_options(arch)
    lists = cache_dir("kernel", "debian-apt", "lists")
    have = any(lists.glob("*_Packages*"))
    if not have or time.time() - lists.stat().st_mtime > DEBIAN_LISTS_MAX_AGE_S:
        try:
            _run(["apt-get", *options, "-q", "update"], "updating the private Debian package lists", hint, timeout=600)
            os.utime(lists)  # apt leaves the directory's mtime alone when nothing changed
        except BuildError:  # a timeout too: run_tool wraps it
            if not have:
                raise
    return options, str(lists.stat().st_mtime_ns)


def resolve_package(arch: str) -> tuple[str, list[str]]:
    """`linux-image-amd64` is a metapackage: the real one is its `linux-image-<version>` dependency.

    Returns it with the apt options to download it by (empty: the host's apt). apt-cache
    takes ~0.7 s, so the answer is remembered until the package lists it came from change.
    """
    meta = f"linux-image-{arch}"
    memo = cache_dir("kernel") / f"resolved-{arch}.json"
    override = os.environ.get(SOURCE_ENV) or None
    try:
        remembered = json.loads(memo.read_text())
    except (OSError, ValueError):
        remembered = {}
    try:
        host_lists = str(os.stat(APT_LISTS).st_mtime_ns)
    except OSError:
        host_lists = ""
    source = remembered.get("source", "host")
    if override or remembered.get("host_lists") != host_lists:
        source = choose_source(override, None if override else _host_policy(meta))  # lists changed
    options: list[str]
    if source == "host":
        options, lists = [], host_lists
    else:
        options, lists = _debian_lists(arch)
    if lists and remembered.get("source") == source and remembered.get("lists") == lists and "package" in remembered:
        return str(remembered["package"]), options
    hint = (HINT if source == "host" else DEBIAN_HINT).format(arch=arch)
    package = _ask_apt(meta, hint, options)
    if lists:
        memo.write_text(json.dumps({"source": source, "host_lists": host_lists, "lists": lists, "package": package}))
    return package, options


def _ask_apt(meta: str, hint: str, options: list[str] | None = None) -> str:
    out = _run(["apt-cache", *(options or []), "depends", meta], f"looking up {meta}", hint).stdout
    for line in out.splitlines():
        kind, _, name = line.strip().partition(":")
        name = name.strip()
        if kind.lstrip("|") == "Depends" and name.startswith("linux-image-") and name != meta:
            return name
    raise BuildError(f"apt-cache shows no linux-image dependency for {meta}", hint=hint)


def _cached(directory: Path) -> Kernel | None:
    """The kernel cached in `directory`, if its build finished with today's module list."""
    try:
        kept = json.loads((directory / KEPT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if kept.get("roots") != list(ROOT_MODULES + SOFT_MODULES) or kept.get("format") != KEPT_FORMAT:
        return None
    modules = tuple(directory / "modules" / path for path in kept["order"])
    vmlinuz = directory / "vmlinuz"
    if not vmlinuz.exists() or not all(path.exists() for path in modules):
        return None
    vmlinux = directory / "vmlinux"
    boot_image = vmlinux if kept.get("pvh") and vmlinux.exists() else vmlinuz
    return Kernel(version=kept["version"], vmlinuz=vmlinuz, modules=modules, boot_image=boot_image)


def _newest_cached() -> Kernel | None:
    """Offline fallback: the most recently cached kernel, whatever its version."""
    candidates = sorted(
        (p for p in cache_dir("kernel").iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for directory in candidates:
        kernel = _cached(directory)
        if kernel is not None:
            return kernel
    return None


def ensure_kernel(progress: Callable[[str], None] | None = None) -> Kernel:
    """Debian's current kernel for this host's architecture, downloaded and trimmed once."""
    arch = debian_arch()
    try:
        package, options = resolve_package(arch)
    except BuildError:
        fallback = _newest_cached()  # apt unusable (offline, no lists): reuse what we have
        if fallback is not None:
            return fallback
        raise
    version = package.removeprefix("linux-image-")
    directory = cache_dir("kernel") / version
    kernel = _cached(directory)
    if kernel is not None:
        return kernel
    if progress:
        where = "the host's apt" if not options else "apt-get from deb.debian.org"
        progress(f"downloading Debian kernel {package} with {where}")
    with partials.build_dir(cache_dir("tmp"), partials.KERNEL) as tmp:
        tree = _download_and_extract(package, arch, Path(tmp), options)
        staged = _keep_needed(tree, version, Path(tmp, "keep"))
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(staged, directory)
    kernel = _cached(directory)
    if kernel is None:
        raise BuildError(f"the kernel cache {directory} is incomplete after building it")
    return kernel


def _download_and_extract(package: str, arch: str, tmp: Path, options: list[str] | None = None) -> Path:
    hint = (DEBIAN_HINT if options else HINT).format(arch=arch)
    _run(["apt-get", *(options or []), "download", package], f"downloading {package}", hint, cwd=tmp, timeout=900)
    debs = sorted(tmp.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download left no {package} package in {tmp}", hint=hint)
    tree = tmp / "tree"
    _run(["dpkg", "-x", str(debs[-1]), str(tree)], f"unpacking {debs[-1].name}", timeout=900)
    debs[-1].unlink()
    return tree


def _keep_needed(tree: Path, version: str, out: Path) -> Path:
    """Copy vmlinuz and the needed modules (with modules.dep) into `out`; return it."""
    modules_root = next(
        (p for p in (tree / "lib/modules" / version, tree / "usr/lib/modules" / version) if p.is_dir()), None
    )
    vmlinuz = tree / "boot" / f"vmlinuz-{version}"
    if modules_root is None or not vmlinuz.exists():
        raise BuildError(f"the kernel package has no vmlinuz-{version} or lib/modules/{version}")
    _depmod(modules_root.parent.parent.parent, version)  # the package ships no modules.dep
    dep_text = (modules_root / "modules.dep").read_text()
    builtin_file = modules_root / "modules.builtin"
    builtin = builtin_file.read_text().split() if builtin_file.exists() else []
    order = load_order(dep_text, ROOT_MODULES + SOFT_MODULES, frozenset(map(module_name, builtin)))
    for path in order:
        target = out / "modules" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(modules_root / path, target)
    shutil.copy2(modules_root / "modules.dep", out / "modules" / "modules.dep")
    shutil.copy2(vmlinuz, out / "vmlinuz")
    pvh = write_pvh_vmlinux(vmlinuz.read_bytes(), out / "vmlinux")
    kept = {
        "version": version,
        "roots": list(ROOT_MODULES + SOFT_MODULES),
        "order": order,
        "format": KEPT_FORMAT,
        "pvh": pvh,
    }
    (out / KEPT_FILE).write_text(json.dumps(kept, indent=1))
    return out


def _depmod(base: Path, version: str) -> None:
    """kmod's depmod where installed, else busybox's (both read BASE/lib/modules/VERSION)."""
    tool = ["depmod"] if shutil.which("depmod") else ["busybox", "depmod"]
    if tool[0] == "busybox" and not shutil.which("busybox"):
        raise BuildError("neither depmod (kmod) nor busybox is installed", hint="run scripts/setup-host")
    _run(tool + ["-b", str(base), version], f"generating modules.dep for {version}", timeout=300)


def bzimage_payload(image: bytes) -> bytes | None:
    """The kernel ELF inside an x86 bzImage (boot protocol >= 2.08), if its compression is
    one Python reads (xz, gzip); None otherwise."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    payload = image[(setup_sects + 1) * 512 + offset :][:length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor().decompress(payload)
        if payload.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    except (lzma.LZMAError, zlib.error):
        return None
    return None


def has_pvh_entry(elf: bytes) -> bool:
    """Whether a vmlinux carries XEN_ELFNOTE_PHYS32_ENTRY, which lets QEMU start it directly
    (PVH): no real-mode setup and no decompression, ~3 s less per boot under TCG."""
    if elf[:5] != b"\x7fELF\x02" or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        position, end = p_offset, p_offset + p_filesz
        while p_type == 4 and position + 12 <= end:  # PT_NOTE: namesz, descsz, type, name, desc
            namesz, descsz, note_type = struct.unpack_from("<III", elf, position)
            name = elf[position + 12 : position + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == 18:
                return True
            position += 12 + (-(-namesz // 4) * 4) + (-(-descsz // 4) * 4)
    return False


def write_pvh_vmlinux(vmlinuz: bytes, out: Path) -> bool:
    """Write the decompressed kernel (sparse: a third of it is zeros) if it can boot as PVH."""
    elf = bzimage_payload(vmlinuz)
    if elf is None or not has_pvh_entry(elf):
        return False
    block = 64 * 1024
    with out.open("wb") as handle:
        for start in range(0, len(elf), block):
            chunk = elf[start : start + block]
            if chunk.count(0) == len(chunk):
                handle.seek(len(chunk), os.SEEK_CUR)
            else:
                handle.write(chunk)
        handle.truncate(len(elf))
    return True
