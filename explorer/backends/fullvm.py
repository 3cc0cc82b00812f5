"""The full-OS VM side: Debian with systemd, booted by libvirt/QEMU with the image's own
kernel and Debian's own initramfs, the workload a systemd service (images/fullvm/).

It is the VM people really run, beside the microVM floor: the host again sees only the VMM,
and from inside the guest agent lists systemd, journald, udevd, sshd, cron, dhclient, the
gettys and the kernel's threads. Milestones from create: the VMM process, the kernel's first
console line, the guest's network answering (guest/forwards.py), the guest agent answering,
sshd's banner on the forwarded port, the service ready at the protocol level; systemd's own
figures (systemd-analyze) are read afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explorer.backends.base import Backend
from explorer.engines.libvirt import LibvirtEngine, Machine
from explorer.guest import agent
from explorer.guest.forwards import REFUSED_PORT, Banner, Refusal
from explorer.guest.handles import RunningVM
from explorer.images.fullvm.source import FullVMDisk
from explorer.model import Side, Target

SSH_GUEST_PORT = 22
MIN_MEMORY_MIB = 1024  # systemd, journald, sshd, the agent and the workload; the notes used 1 GiB


@dataclass(frozen=True)
class AgentAnswers:
    milestone: str = "agent"
    every_s: float = 0.5  # a guest-ping blocks up to a second while the agent is not up

    def reached(self, target: Target[RunningVM], state: dict[str, Any]) -> bool:
        return agent.ping(target.held.domain)

    def close(self, state: dict[str, Any]) -> None:
        return None


FULL_OS = Machine(
    milestones=("created", "process", "kernel", "network", "agent", "ssh", "ready"),
    console_milestones={"kernel": "kernel"},
    # the guest's network answers (hostfwd's connections to a closed guest port are refused):
    # before it QEMU holds every forwarded connection open, and no readiness check can pass
    ready_after="network",
    min_memory_mib=MIN_MEMORY_MIB,
    extra_ports=(SSH_GUEST_PORT, REFUSED_PORT),
    agent=True,
    probes=(Refusal(), AgentAnswers(), Banner(guest_port=SSH_GUEST_PORT)),
    wait_after_ready=("agent", "ssh"),  # sshd and the agent may come up after the service answers
    chains=(("created", "process", "kernel", "network", "ready"), ("kernel", "agent"), ("network", "ssh")),
)


def assemble(side: Side) -> Backend[RunningVM]:
    return Backend(side, FullVMDisk(), LibvirtEngine(side, FULL_OS), agent.AgentChannel())
