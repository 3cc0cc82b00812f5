"""The full-OS VM side: Debian with systemd, booted by libvirt/QEMU with the image's own
kernel and Debian's own initramfs, the workload a systemd service (explorer/images/fullos.py).

It is the VM people really run, beside the microVM floor: the host again sees only the VMM,
and from inside the guest agent lists systemd, journald, udevd, sshd, cron, dhclient, the
gettys and the kernel's threads. Milestones from create: the VMM process, the kernel's first
console line, the guest agent answering, sshd's banner on the forwarded port, the service
ready at the protocol level; systemd's own figures (systemd-analyze) are read afterwards.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from explorer import guest
from explorer.backends.base import Artifact, GuestView, Target
from explorer.backends.libvirt import LibvirtBackend
from explorer.errors import BackendError, UsageError
from explorer.guest import agent
from explorer.scenario import Scenario

SSH_GUEST_PORT = 22
MIN_MEMORY_MIB = 1024  # systemd, journald, sshd, the agent and the workload; the notes used 1 GiB
PROBE_EVERY_S = 0.5
AFTER_READY_S = 60.0  # the agent and the ssh banner are asked at most this often while booting
ANALYZE = re.compile(r"([\d.]+(?:min|s|ms))\s+\((kernel|initrd|userspace)\)")


class FullVMBackend(LibvirtBackend):
    MILESTONES = ("created", "process", "kernel", "agent", "ssh", "ready")
    READY_AFTER = None

    def supports(self, scenario: Scenario) -> str | None:
        if scenario.workload.recipe is None:
            return "the full-OS image is built from an offline recipe; this scenario names an image"
        return None

    def prepare(self, scenario: Scenario, progress: Any = None) -> Artifact:
        from explorer.images.fullos import ensure_fullos_image
        from explorer.kvm import kvm_usable

        reason = self.supports(scenario)
        if reason:
            raise UsageError(f"side {self.side.name}: {reason}")
        self.preflight(scenario)
        image = ensure_fullos_image(scenario, progress)
        verdict = kvm_usable(kernel=image.kernel)
        facts = {**image.facts, "kernel_version": image.kernel_version, "cmdline": image.cmdline,
                 "initramfs_bytes": image.facts.get("initrd_bytes"), "memory_mib": self.memory_mib(scenario),
                 "vcpus": scenario.vm.vcpus, "cpu": scenario.vm.cpu,
                 "accel": "kvm" if verdict.usable else "tcg", "accel_reason": verdict.reason}
        paths = {"disk": str(image.disk), "kernel": str(image.kernel), "initramfs": str(image.initrd)}
        return Artifact(ref=str(image.disk), facts=facts, paths=paths)

    def preflight(self, scenario: Scenario) -> None:
        self.check_memory(scenario, self.memory_mib(scenario))

    def memory_mib(self, scenario: Scenario) -> int:
        return max(scenario.vm.memory_mib, MIN_MEMORY_MIB)

    def domain_options(self, scenario: Scenario) -> dict[str, Any]:
        return {"memory_mib": self.memory_mib(scenario), "extra_ports": {SSH_GUEST_PORT: 0}, "agent": True}

    def poll(self, target: Target) -> None:
        vm = target.handle
        vm.read_new()
        if "kernel" in vm.seen:
            target.mark("kernel", vm.seen["kernel"])
        if vm.process is not None and not vm.process.is_running():
            raise BackendError(f"the VM {target.name} stopped before it was ready",
                               hint="its console's last lines:\n" + vm.tail())
        now = time.monotonic()
        if now - getattr(vm, "probed_at", 0.0) < PROBE_EVERY_S:
            return
        vm.probed_at = now
        if "agent" not in target.marks and agent.ping(self._domain(target)):
            target.mark("agent")
        if "ssh" not in target.marks and _ssh_banner(target.facts["forwarded_ports"][str(SSH_GUEST_PORT)]):
            target.mark("ssh")

    def after_ready(self, target: Target) -> None:
        """sshd and the agent may come up after the service answers: wait for them, bounded."""
        deadline = time.monotonic() + AFTER_READY_S
        while not {"agent", "ssh"} <= set(target.marks) and time.monotonic() < deadline:
            self.poll(target)
            time.sleep(0.1)

    def guest_view(self, target: Target) -> GuestView:
        """The view script run by the guest agent (after readiness, as docker exec's), and
        systemd's own boot figures and the guest's memory use into the target's facts."""
        domain = self._domain(target)
        if "agent" not in target.marks:
            raise BackendError(f"the guest agent of {target.name} never answered")
        result = agent.run(domain, ["/bin/sh", "-c", guest.view_script()])
        view = guest.parse_view(result.stdout, channel="qemu-guest-agent guest-exec")
        if not result.succeeded or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {result.stderr.strip()[-300:]}")
        target.facts["systemd_analyze"] = _systemd_analyze(domain)
        target.facts["guest_memory"] = _guest_memory(domain)
        return view

    def _domain(self, target: Target) -> Any:
        return self._call(f"looking up {target.name}", self.conn.lookupByName, target.name)


def _ssh_banner(port: int) -> bool:
    """sshd's banner on the forwarded port: hostfwd accepts early, only sshd says SSH-."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
            sock.settimeout(0.3)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _seconds(text: str) -> float:
    if text.endswith("min"):
        return float(text[:-3]) * 60
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text[:-1])


def parse_systemd_analyze(text: str) -> dict[str, float]:
    """'Startup finished in 3.1s (kernel) + 6.2s (initrd) + 20.4s (userspace) = 29.7s'."""
    return {f"{phase}_s": _seconds(value) for value, phase in ANALYZE.findall(text)}


def _systemd_analyze(domain: Any) -> dict[str, Any]:
    try:
        result = agent.run(domain, ["/usr/bin/systemd-analyze", "time"])
    except BackendError as exc:
        return {"available": False, "reason": str(exc)}
    figures = parse_systemd_analyze(result.stdout)
    if not figures:  # "Bootup is not yet finished" while a unit still starts
        return {"available": False, "reason": (result.stdout + result.stderr).strip()[-200:]}
    return {"available": True, **figures, "text": result.stdout.strip().splitlines()[0]}


def _guest_memory(domain: Any) -> dict[str, Any]:
    try:
        text = agent.run(domain, ["/bin/cat", "/proc/meminfo"]).stdout
    except BackendError as exc:
        return {"available": False, "reason": str(exc)}
    kib = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    if "MemTotal" not in kib or "MemAvailable" not in kib:
        return {"available": False, "reason": "no MemTotal/MemAvailable in the guest's /proc/meminfo"}
    return {"available": True, "total_bytes": kib["MemTotal"], "used_bytes": kib["MemTotal"] - kib["MemAvailable"]}
