"""The full-OS image as a Vagrant box for vagrant-libvirt, and the settings the repository's
top-level Vagrantfile reads to bring up the comparable VM of a scenario.

A box is an uncompressed tar (compressing 250 MB of qcow2 again gains little and takes
long) of metadata.json, a box Vagrantfile, box.img (the qcow2) and the image's kernel and
initrd, which the box Vagrantfile hands to vagrant-libvirt for direct kernel boot. The
templates live in the repository's vagrant/box/ folder; vagrant/README.md tells how to use
the result. Nothing here runs Vagrant except `add_box`, which the caller decides to run.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.cache import cache_dir
from explorer.contracts import DoctorCheck, SourceDefaults
from explorer.errors import BuildError
from explorer.images.fullvm.build import CMDLINE, FullOSImage, insecure_private_key_path
from explorer.images.fullvm.source import FullVMDisk
from explorer.kvm import cached_verdict
from explorer.model import Artifact
from explorer.scenario import Scenario
from explorer.tools import run_tool

BOX_FORMAT = 1  # bump when the box layout changes
TEMPLATES = Path(__file__).resolve().parent.parent.parent / "vagrant" / "box"
STORAGE_POOL = "explorer-vagrant"  # vagrant-libvirt's pool: explorer creates it, owns it
SSH_PORT = 2222  # on 127.0.0.1, forwarded to the guest's 22 through eth1
DUMMY_MAC = "52:54:00:e5:70:01"  # eth0, the NIC vagrant-libvirt's agent lookup matches
GIB = 1024**3
Progress = Callable[[str], None]


@dataclass
class Box:
    """A box file under the cache, the name it is added to Vagrant as, and its settings."""

    name: str  # explorer/SCENARIO-HASH
    path: Path  # the .box file
    settings: Path  # $EXPLORER_CACHE/vagrant/SCENARIO.json, read by the top-level Vagrantfile
    image: FullOSImage
    facts: dict[str, Any] = field(default_factory=dict)


def render(template: str, values: dict[str, str]) -> str:
    """Replace `@NAME@` placeholders; one left over (or one unused) is an error."""
    used = set(re.findall(r"@([A-Z_]+)@", template))
    if used != set(values):
        raise BuildError(f"template placeholders {sorted(used)} do not match the values {sorted(values)}")
    return re.sub(r"@([A-Z_]+)@", lambda match: values[match.group(1)], template)


def ruby_string(value: str) -> str:
    """A single-quoted Ruby literal (only `\\` and `'` are special there: no interpolation)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def box_metadata(image: FullOSImage) -> str:
    """metadata.json: vagrant-libvirt reads the virtual size in whole GB."""
    size_gb = math.ceil(int(image.facts["disk_virtual_bytes"]) / GIB)
    return render(template("metadata.json.in"), {"VIRTUAL_SIZE_GB": str(size_gb)})


def box_vagrantfile(image: FullOSImage) -> str:
    return render(
        template("Vagrantfile.in"),
        {"CMDLINE": ruby_string(image.cmdline or CMDLINE), "BOOT_DIR": ruby_string(str(boot_dir(image)))},
    )


def boot_dir(image: FullOSImage) -> Path:
    """Where this host keeps a copy of the box's kernel and initrd that QEMU's user can read:
    the box itself lands under VAGRANT_HOME (root's 0700 home here), which QEMU cannot enter.
    The box's Vagrantfile prefers this copy and falls back to the files inside the box."""
    root = Path("/var/lib/explorer/boot") if os.geteuid() == 0 else cache_dir("boot")
    return root / str(image.facts["cache_key"])


def install_boot_files(image: FullOSImage) -> Path:
    """Copy the kernel and initrd to boot_dir(image), readable by QEMU's user (0644 files in
    0711 directories); once per image."""
    target = boot_dir(image)
    if not (target / "initrd.img").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for parent in (target, *list(target.parents)[:2]):
            parent.chmod(0o711)
        for name, source in (("vmlinuz", image.kernel), ("initrd.img", image.initrd)):
            partial = target / f".{name}.{os.getpid()}"
            shutil.copyfile(source, partial)
            partial.chmod(0o644)
            os.replace(partial, target / name)
    return target


def box_key(image: FullOSImage) -> str:
    blob = json.dumps([BOX_FORMAT, image.facts["cache_key"], box_metadata(image), box_vagrantfile(image)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def box_name(scenario: Scenario, image: FullOSImage) -> str:
    return f"explorer/{scenario.name}-{box_key(image)}"


def libvirt_driver(image: FullOSImage) -> str:
    """kvm where explorer's cached boot test found KVM working, else qemu (TCG). Reads the
    cached verdict only: building a box never boots anything."""
    verdict = cached_verdict(image.kernel) or cached_verdict()
    return "kvm" if verdict is not None and verdict.usable else "qemu"


def machine_settings(scenario: Scenario, name: str, driver: str, private_key: Path) -> dict[str, Any]:
    """What the top-level Vagrantfile needs (environment variables override the ports,
    the driver and the pool; see the Vagrantfile)."""
    return {
        "scenario": scenario.name,
        "box": name,
        "driver": driver,
        "ssh_port": SSH_PORT,
        "host_port": scenario.workload.port,
        "guest_port": scenario.workload.port,
        "memory_mib": scenario.vm.memory_mib,
        "cpus": scenario.vm.vcpus,
        "storage_pool": STORAGE_POOL,
        "mac": DUMMY_MAC,
        "private_key": str(private_key),
    }


def ensure_box(
    scenario: Scenario, image: FullOSImage, progress: Progress | None = None, driver: str | None = None
) -> Box:
    """The scenario's box file (written once per image and template content) and the
    settings file for the top-level Vagrantfile (rewritten every time: driver, key path)."""
    name = box_name(scenario, image)
    path = cache_dir("vagrant") / f"{name.replace('/', '_')}.box"
    built = not path.is_file()
    started = time.monotonic()
    if built:
        if progress:
            progress(f"packaging the full-OS image of {scenario.name} as the Vagrant box {name}")
        _write_box(image, path)
    install_boot_files(image)
    settings = cache_dir("vagrant") / f"{scenario.name}.json"
    chosen = driver or libvirt_driver(image)
    data = machine_settings(scenario, name, chosen, insecure_private_key_path())
    settings.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    facts = {
        "box_bytes": path.stat().st_size,
        "built": built,
        "box_s": round(time.monotonic() - started, 1),
        "driver": chosen,
        "storage_pool": STORAGE_POOL,
        "ssh_port": SSH_PORT,
    }
    return Box(name, path, settings, image, facts)


def _write_box(image: FullOSImage, path: Path) -> None:
    """Write the tar next to its final name and rename it into place when complete."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    texts = {"metadata.json": box_metadata(image), "Vagrantfile": box_vagrantfile(image)}
    files = {"box.img": image.disk, "vmlinuz": image.kernel, "initrd.img": image.initrd}
    try:
        with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
            for member, text in texts.items():
                _add_bytes(tar, member, text.encode())
            for member, source in files.items():
                info = tar.gettarinfo(str(source), arcname=member)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o644
                with source.open("rb") as handle:
                    tar.addfile(info, handle)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def add_box_argv(path: Path | str, name: str) -> list[str]:
    return ["vagrant", "box", "add", "--force", "--name", name, str(path)]


def add_box(path: Path | str, name: str, timeout: float = 600.0) -> None:
    """Add the box file at `path` to Vagrant as `name` (~3 s; replaces a box of that name)."""
    if shutil.which("vagrant") is None:
        raise BuildError("vagrant is not installed", hint="run scripts/setup-host")
    run_tool(add_box_argv(path, name), f"adding {name} to Vagrant", timeout=timeout)


class VagrantBox(SourceDefaults):
    """The Vagrant side starts from the full-OS image, packaged as a box (added to Vagrant by
    the engine, which also owns the storage pool it is uploaded to)."""

    def __init__(self, disk: FullVMDisk | None = None) -> None:
        self.disk = disk or FullVMDisk()

    def supports(self, scenario: Scenario) -> str | None:
        return self.disk.supports(scenario)

    def doctor_checks(self) -> list[DoctorCheck]:
        return self.disk.doctor_checks()

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        artifact = self.disk.prepare(scenario, progress)  # the full-OS image, the KVM verdict
        image = self.disk.image(scenario)  # cached: the image just prepared
        box = ensure_box(scenario, image, progress, driver="kvm" if artifact.accel and artifact.accel.kvm else "qemu")
        artifact.facts.update(
            box=box.name,
            box_bytes=box.facts["box_bytes"],
            stored_bytes=box.facts["box_bytes"],
            stored_parts={"box": box.facts["box_bytes"]},
            stored_method="the Vagrant box file (an uncompressed tar of the compressed qcow2, kernel, initramfs)",
        )
        artifact.paths["box"] = str(box.path)
        artifact.box = box.name
        return artifact
