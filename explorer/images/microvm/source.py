"""The microVM starts from the container's own image: its filesystem on an ext4 disk, with
Debian's kernel, a small initramfs and explorer's init (vm_image.py). Preparing it also
settles the accelerator: KVM only where a real boot test proved it works (explorer/kvm.py),
here, so that a first boot test is never timed as a start."""

from __future__ import annotations

from explorer.contracts import DoctorCheck, Progress, SourceDefaults
from explorer.dockerd import docker_client
from explorer.images.container.source import ContainerImage
from explorer.images.microvm.vm_image import ensure_vm_image
from explorer.images.vmdisk import VM_FILESYSTEM, accel_for, vm_tools
from explorer.model import Artifact
from explorer.scenario import Scenario


class MicroVMDisk(SourceDefaults):
    def __init__(self, image: ContainerImage | None = None) -> None:
        self.image = image or ContainerImage()

    def prepare(self, scenario: Scenario, progress: Progress | None = None) -> Artifact:
        """The container image first (the VM disk is made from it), then the VM image."""
        vm = ensure_vm_image(docker_client(), scenario, self.image.prepare(scenario, progress), progress)
        facts = {
            **vm.facts,
            "kernel_version": vm.kernel_version,
            "cmdline": vm.cmdline,
            "filesystem": VM_FILESYSTEM,
        }
        paths = {"disk": str(vm.disk), "kernel": str(vm.kernel), "initramfs": str(vm.initramfs)}
        return Artifact(
            ref=str(vm.disk),
            facts=facts,
            paths=paths,
            accel=accel_for(vm.kernel),
            image_id=facts.get("image_id"),
            cmdline=vm.cmdline,
            filesystem=VM_FILESYSTEM,
        )

    def doctor_checks(self) -> list[DoctorCheck]:
        return [*self.image.doctor_checks(), *vm_tools()]
