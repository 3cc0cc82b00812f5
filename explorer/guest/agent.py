"""A channel into a full-OS guest: qemu-guest-agent over its virtio-serial port, driven
through libvirt (`libvirt_qemu.qemuAgentCommand`): guest-ping, and guest-exec with captured
output, then guest-exec-status until the command has exited."""

from __future__ import annotations

import base64
import contextlib
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
from explorer.model import GuestView, InsideDelivery, InsideOutput, InsideProgram, Target

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


# Bytes per guest-file-write (base64 on the wire: 128 KiB). Measured here on the full-OS guest
# under TCG: 64-128 KiB per write took 0.15-0.3 s each; one 256 KiB write, or a second 192 KiB one,
# got no answer within 20-60 s, after which libvirt calls the agent "not available for now".
CHUNK = 96 * 1024
GUEST_DIR = "/var/tmp"  # the guest's own disk (this instance's overlay), not a host mount


def upload(domain: Any, path: str, data: bytes, mode: str = "0755") -> None:
    """`data` written to `path` in the guest by the agent (guest-file-open/-write/-close), then
    made executable by a guest-exec of chmod."""
    handle = _command(domain, {"execute": "guest-file-open", "arguments": {"path": path, "mode": "w"}}, 10)
    close = {"execute": "guest-file-close", "arguments": {"handle": handle}}
    try:
        for start in range(0, len(data), CHUNK):
            chunk = base64.b64encode(data[start : start + CHUNK]).decode()
            _command(domain, {"execute": "guest-file-write", "arguments": {"handle": handle, "buf-b64": chunk}}, 30)
    except BackendError:
        with contextlib.suppress(BackendError):  # the write's error is the one to say, not the close's
            _command(domain, close, 10)
        raise
    _command(domain, close, 10)
    done = run(domain, ["/bin/chmod", mode, path])
    if not done.succeeded:
        raise BackendError(f"chmod {mode} {path} in the guest failed: {done.stderr.strip()[-200:]}")


def inside_by_agent(domain: Any, program: InsideProgram) -> InsideDelivery:
    """The inside probe written into the guest by its agent, each run a guest-exec (root inside;
    the probe drops to the workload's user itself with --as-pid), removed after."""
    path = f"{GUEST_DIR}/{program.name}"
    with open(program.binary, "rb") as binary:
        upload(domain, path, binary.read())
    outputs: list[InsideOutput] = []
    removal = None
    try:
        for each in program.runs:
            started = time.monotonic()
            try:
                got = run(domain, [path, "--timeout", str(program.timeout_s), *each.args], program.timeout_s + 15)
                outputs.append(InsideOutput(each.label, got.rc, got.stdout, got.stderr, time.monotonic() - started))
            except BackendError as exc:
                outputs.append(InsideOutput(each.label, None, "", str(exc), time.monotonic() - started))
    finally:
        gone = run(domain, ["/bin/rm", "-f", path])
        if not gone.succeeded:
            removal = f"rm -f {path} exited {gone.rc}: {gone.stderr.strip()[-200:]}"
    how = (
        f"written by the guest agent (guest-file-write) into {path}, the guest's own disk, each run a guest-exec "
        "(root inside); removed after"
    )
    return InsideDelivery(how, outputs, removal)


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

    def inside(self, target: Target[RunningVM], program: InsideProgram) -> InsideDelivery:
        return inside_by_agent(target.held.domain, program)


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
