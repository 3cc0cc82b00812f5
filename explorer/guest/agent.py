"""A channel into a full-OS guest: qemu-guest-agent over its virtio-serial port, driven
through libvirt (`libvirt_qemu.qemuAgentCommand`): guest-ping, and guest-exec with captured
output, then guest-exec-status until the command has exited."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import libvirt  # optional dependency (libvirt-python): this channel is only loaded by VM sides
import libvirt_qemu

from explorer.errors import BackendError
from explorer.guest import parse_view, view_script
from explorer.guest.handles import RunningVM
from explorer.model import GuestView, Target

EXEC_TIMEOUT_S = 30.0


@dataclass
class ExecResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def succeeded(self) -> bool:
        return self.rc == 0


def _command(domain: Any, command: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    try:
        reply = libvirt_qemu.qemuAgentCommand(domain, json.dumps(command), timeout_s, 0)
    except libvirt.libvirtError as exc:
        raise BackendError(f"the guest agent did not answer {command['execute']}: {exc}") from exc
    return json.loads(reply).get("return", {})


def ping(domain: Any, timeout_s: int = 1) -> bool:
    """Whether the guest agent answers now (False while the guest boots)."""
    try:
        _command(domain, {"execute": "guest-ping"}, timeout_s)
    except BackendError:
        return False
    return True


def run(domain: Any, argv: list[str], timeout_s: float = EXEC_TIMEOUT_S) -> ExecResult:
    """Run `argv` in the guest (no shell unless argv names one) and wait for its output."""
    started = _command(
        domain, {"execute": "guest-exec", "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True}}, 5
    )
    pid, deadline = started["pid"], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _command(domain, {"execute": "guest-exec-status", "arguments": {"pid": pid}}, 5)
        if status.get("exited"):
            return ExecResult(
                status.get("exitcode", -1), _decode(status.get("out-data")), _decode(status.get("err-data"))
            )
        time.sleep(0.05)
    raise BackendError(f"{argv[0]} did not finish in the guest within {timeout_s:.0f}s")


def _decode(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""


class AgentChannel:
    """The full-OS VM's channel: the view script run by the guest agent (after readiness, as
    docker exec's is), with systemd's own boot figures and the guest's memory use recorded in
    the target's facts. It takes a RunningVM: the libvirt domain the engine keeps in the handle."""

    WAIT_S = 60.0  # the agent may come up after the service answers

    def view(self, target: Target[RunningVM]) -> GuestView:
        domain = target.held.domain
        deadline = time.monotonic() + self.WAIT_S
        while "agent" not in target.marks:
            if ping(domain):
                target.mark("agent")
            elif time.monotonic() > deadline:
                raise BackendError(f"the guest agent of {target.name} did not answer in {self.WAIT_S:g} s")
        result = run(domain, ["/bin/sh", "-c", view_script()])
        view = parse_view(result.stdout, channel="qemu-guest-agent guest-exec")
        if not result.succeeded or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {result.stderr.strip()[-300:]}")
        target.facts["systemd_analyze"] = systemd_analyze(domain)
        target.facts["guest_memory"] = guest_memory(domain)
        return view


ANALYZE = re.compile(r"([\d.]+(?:min|s|ms))\s+\((kernel|initrd|userspace)\)")


def _seconds(text: str) -> float:
    if text.endswith("min"):
        return float(text[:-3]) * 60
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text[:-1])


def parse_systemd_analyze(text: str) -> dict[str, float]:
    """'Startup finished in 3.1s (kernel) + 6.2s (initrd) + 20.4s (userspace) = 29.7s'."""
    return {f"{phase}_s": _seconds(value) for value, phase in ANALYZE.findall(text)}


def systemd_analyze(domain: Any) -> dict[str, Any]:
    try:
        result = run(domain, ["/usr/bin/systemd-analyze", "time"])
    except BackendError as exc:
        return {"available": False, "reason": str(exc)}
    figures = parse_systemd_analyze(result.stdout)
    if not figures:  # "Bootup is not yet finished" while a unit still starts
        return {"available": False, "reason": (result.stdout + result.stderr).strip()[-200:]}
    return {"available": True, **figures, "text": result.stdout.strip().splitlines()[0]}


def guest_memory(domain: Any) -> dict[str, Any]:
    try:
        text = run(domain, ["/bin/cat", "/proc/meminfo"]).stdout
    except BackendError as exc:
        return {"available": False, "reason": str(exc)}
    kib = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    if "MemTotal" not in kib or "MemAvailable" not in kib:
        return {"available": False, "reason": "no MemTotal/MemAvailable in the guest's /proc/meminfo"}
    return {"available": True, "total_bytes": kib["MemTotal"], "used_bytes": kib["MemTotal"] - kib["MemAvailable"]}
