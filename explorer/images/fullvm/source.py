"""The full-OS VM starts from a Debian image with systemd, sshd and the guest agent, the
workload a service (build.py), booted with its own kernel and initramfs."""

from __future__ import annotations

from explorer.contracts import DoctorCheck, Progress, SourceDefaults
from explorer.images.fullvm.build import FullOSImage, ensure_fullos_image
from explorer.images.vmdisk import VM_FILESYSTEM, accel_for, vm_tools
from explorer.model import Artifact
from explorer.scenario import Scenario


class FullVMDisk(SourceDefaults):
    def supports(self, scenario: Scenario) -> str | None:
        if scenario.workload.recipe is None:
            return "the full-OS image is built from an offline recipe; this scenario names an image"
        return None

    def image(self, scenario: Scenario, progress: Progress | None = None) -> FullOSImage:
        return ensure_fullos_image(scenario, progress)

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        image = self.image(scenario, progress)
        facts = {
            **image.facts,
            "kernel_version": image.kernel_version,
            "cmdline": image.cmdline,
            "initramfs_bytes": image.facts.get("initrd_bytes"),
            "filesystem": VM_FILESYSTEM,
        }
        paths = {"disk": str(image.disk), "kernel": str(image.kernel), "initramfs": str(image.initrd)}
        return Artifact(
            ref=str(image.disk),
            facts=facts,
            paths=paths,
            accel=accel_for(image.kernel),
            cmdline=image.cmdline,
            filesystem=VM_FILESYSTEM,
            service=image.facts.get("service"),
        )

    def doctor_checks(self) -> list[DoctorCheck]:
        return vm_tools()
