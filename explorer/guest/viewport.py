"""The microVM's channel: explorer's init answers view requests on a virtio-serial port.

The host end is QEMU's UNIX socket for the port (libvirt makes it per domain, or a
hand-started QEMU is told where). The engine that creates the VM connects it at once, so
the guest's read waits for a request instead of polling; a view is taken when asked, after
readiness, as `docker exec`'s is.
"""

from __future__ import annotations

import socket
import time
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

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _answer(text: str, number: int) -> str | None:
    """The complete view block in `text` that answers request `number`, or None."""
    start = text.find(BEGIN)
    while start >= 0:
        stop = text.find(END, start)
        if stop < 0:
            return None
        block = text[start : stop + len(END)]
        if f"\nrequest={number}\n" in block:
            return block
        start = text.find(BEGIN, stop)
    return None
