"""A channel into a full-OS guest: qemu-guest-agent over its virtio-serial port, driven
through libvirt (`libvirt_qemu.qemuAgentCommand`): guest-ping, and guest-exec with captured
output, then guest-exec-status until the command has exited."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from explorer.errors import BackendError

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
    import libvirt
    import libvirt_qemu

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
    started = _command(domain, {"execute": "guest-exec", "arguments": {
        "path": argv[0], "arg": argv[1:], "capture-output": True}}, 5)
    pid, deadline = started["pid"], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _command(domain, {"execute": "guest-exec-status", "arguments": {"pid": pid}}, 5)
        if status.get("exited"):
            return ExecResult(status.get("exitcode", -1), _decode(status.get("out-data")),
                              _decode(status.get("err-data")))
        time.sleep(0.05)
    raise BackendError(f"{argv[0]} did not finish in the guest within {timeout_s:.0f}s")


def _decode(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""
