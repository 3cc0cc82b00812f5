"""The microVM's channel: explorer's init answers view requests on a virtio-serial port.

The host end is QEMU's UNIX socket for the port (libvirt makes it per domain, or a
hand-started QEMU is told where). The engine that creates the VM connects it at once, so
the guest's read waits for a request instead of polling; a view is taken when asked, after
readiness, as `docker exec`'s is.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from explorer.errors import BackendError
from explorer.guest import BEGIN, END, parse_view
from explorer.model import GuestView

PORT = "explorer.view"  # the virtio-serial port the microVM's init serves views on


class ViewChannel:
    """The host end of the microVM's view port (QEMU's UNIX socket for it): a request line
    ("view N"), and back the view block the guest took then, which names N. Connected when the
    VM is created and kept open, so that the guest's read waits for a request instead of
    polling. A late answer to an earlier request that timed out is recognised and dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._requests = 0

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect to QEMU's socket, which exists once QEMU has started; retried until then."""
        deadline = time.monotonic() + timeout_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise BackendError(f"could not connect to the guest view port {self.path}: {exc}") from exc
                time.sleep(0.02)
                continue
            self._sock = sock
            return

    def request(self, timeout_s: float) -> GuestView:
        """A view taken after this call; BackendError naming what came back if none did in time."""
        if self._sock is None:
            raise BackendError(f"the guest view port {self.path} is not connected")
        self._requests += 1
        number = self._requests
        deadline = time.monotonic() + timeout_s
        data = bytearray()
        try:
            self._sock.settimeout(timeout_s)
            self._sock.sendall(f"view {number}\n".encode())
            while (block := _answer(bytes(data).decode(errors="replace"), number)) is None:
                self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise BackendError("the guest view port closed before a view came back")
                data += chunk
        except TimeoutError as exc:
            said = bytes(data[-200:]).decode(errors="replace")
            raise BackendError(
                f"the guest sent no view on its view port in {timeout_s:.0f}s"
                + (f" (it sent {said!r})" if said else "")
            ) from exc
        view = parse_view(block, channel=f"virtio-serial port {PORT}")
        if view is None:
            raise BackendError("the guest's answer on its view port was not a view block")
        return view

    def inside(self, binary: bytes, timeout_s: int, runs: list[list[str]], wait_s: float) -> InsideAnswer:
        """The inside probe sent on the port and run by the guest's init once per argument set in
        `runs` (each as its init's child: root inside, or the user --as-pid names), then removed;
        what each run printed, and the path it had in the guest."""
        if self._sock is None:
            raise BackendError(f"the guest view port {self.path} is not connected")
        self._requests += 1
        number = self._requests
        sets = ",".join(":".join(args) or "-" for args in runs)
        deadline = time.monotonic() + wait_s
        data = bytearray()
        try:
            self._sock.settimeout(wait_s)
            self._sock.sendall(f"inside {number} {len(binary)} {timeout_s} {sets}\n".encode() + binary)
            while (block := _block(bytes(data).decode(errors="replace"), number, INSIDE_BEGIN, INSIDE_END)) is None:
                self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise BackendError("the guest view port closed before the inside probe's answer came back")
                data += chunk
        except TimeoutError as exc:
            raise BackendError(f"the guest sent no answer for the inside probe in {wait_s:.0f}s") from exc
        return parse_inside(block)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _answer(text: str, number: int) -> str | None:
    """The complete view block in `text` that answers request `number`, or None."""
    return _block(text, number, BEGIN, END)


def _block(text: str, number: int, begin: str, end: str) -> str | None:
    """The complete block between `begin` and `end` in `text` that answers request `number`, or None."""
    start = text.find(begin)
    while start >= 0:
        stop = text.find(end, start)
        if stop < 0:
            return None
        block = text[start : stop + len(end)]
        if f"\nrequest={number}\n" in block:
            return block
        start = text.find(begin, stop)
    return None


INSIDE_BEGIN, INSIDE_END = "EXPLORER-INSIDE begin", "EXPLORER-INSIDE end"


@dataclass
class InsideRun:
    """One run's answer from the guest's init: exit status, what it printed, its guest-clock seconds."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float


@dataclass
class InsideAnswer:
    path: str
    runs: list[InsideRun] = field(default_factory=list)


def parse_inside(block: str) -> InsideAnswer:
    """The guest init's inside block (explorer/guest/init.sh, serve_inside) as its runs."""
    answer = InsideAnswer(path="?")
    current: InsideRun | None = None
    for line in block.splitlines()[1:-1]:
        if line.startswith("path="):
            answer.path = line.removeprefix("path=")
        elif line.startswith("run "):
            fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
            wall = float(fields.get("ended", 0)) - float(fields.get("started", 0))
            current = InsideRun(int(fields.get("rc", "-1")), "", "", round(wall, 3))
            answer.runs.append(current)
        elif current is not None and line.startswith("stderr "):
            current.stderr += line.removeprefix("stderr ") + "\n"
        elif current is not None and not line.startswith("request="):
            current.stdout += line + "\n"
    return answer
