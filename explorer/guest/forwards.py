"""What the host can tell about a booting VM through QEMU's hostfwd on 127.0.0.1, without
anything of explorer's in the guest, and without loading it.

- Refusal (the guest's network is up): QEMU accepts a forwarded connection at once and holds
  it while it tries the guest. Until the guest's kernel has its address, that attempt goes
  unanswered and the connection stays open; from then on, a connection forwarded to a port
  nothing listens on (9, discard) is refused by the guest's kernel and closed at once. A fresh
  connection is opened every few tenths of a second (QEMU retries a held one only every few
  seconds, which would date the milestone late); they cost the guest nothing.
- Banner (sshd answers): one connection at a time, kept across polls and read without
  blocking, until it carries the banner. Under TCG sshd takes seconds to serve a connection;
  a probe that gave up after a moment and opened another would pile up sshd processes in the
  guest (MaxStartups throttling was seen at 2 probes a second) and slow the boot it measures.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from explorer.model import Target


class Forwarding(Protocol):
    """A VM's handle that knows its forwarded ports (a RunningVM, a VagrantMachine)."""

    forwarded_ports: dict[int, int]  # guest port -> the host's 127.0.0.1 port


H = TypeVar("H", bound=Forwarding)  # any VM's handle: only its forwarded ports are read

REFUSED_PORT = 9  # discard: nothing listens on it in a guest explorer built
FRESH_EVERY_S = 0.25


def _open(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    return sock


def _peek(sock: socket.socket) -> bytes | None:
    """What a non-blocking connection says now: None while it is open and silent (or still
    connecting), b"" once the peer closed (or reset) it, else the first bytes it sent (kept).
    A connect the host refused (QEMU not listening yet) raises ConnectionRefusedError."""
    try:
        return sock.recv(64, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return None
    except ConnectionRefusedError:
        raise
    except OSError:  # reset after it was accepted
        return b""


@dataclass(frozen=True)
class Refusal:
    """The milestone `milestone` once a connection forwarded to guest port `guest_port` is
    closed by the guest's refusal rather than held by QEMU."""

    milestone: str = "network"
    guest_port: int = REFUSED_PORT
    every_s: float = 0.0  # non-blocking: at every poll
    most_pending: int = 200

    def reached(self, target: Target[H], state: dict[str, Any]) -> bool:
        port = target.held.forwarded_ports[self.guest_port]
        pending: list[tuple[float, socket.socket]] = state.setdefault("refusal", [])
        now = time.monotonic()
        if not pending or now - pending[-1][0] >= FRESH_EVERY_S:
            pending.append((now, _open(port)))
        for entry in list(pending):
            try:
                said = _peek(entry[1])
            except ConnectionRefusedError:  # QEMU is not listening yet: not the guest's answer
                said = b"?"
            if said == b"":
                self.close(state)
                return True
            if said is not None or len(pending) > self.most_pending:
                pending.remove(entry)
                entry[1].close()
        return False

    def close(self, state: dict[str, Any]) -> None:
        for _, sock in state.pop("refusal", []):
            sock.close()


@dataclass(frozen=True)
class Banner:
    """The milestone `milestone` once the server on forwarded guest port `guest_port` speaks
    first with `expect` (sshd: SSH-)."""

    milestone: str = "ssh"
    guest_port: int = 22
    every_s: float = 0.0  # non-blocking: at every poll
    expect: bytes = b"SSH-"

    def reached(self, target: Target[H], state: dict[str, Any]) -> bool:
        port = target.held.forwarded_ports[self.guest_port]
        sock = state.get("banner")
        if sock is None:
            sock = state["banner"] = _open(port)
        try:
            said = _peek(sock)
        except ConnectionRefusedError:
            said = b""
        if said is None:
            return False
        self.close(state)  # closed (nothing listening yet) or spoke: the next poll opens another
        return said.startswith(self.expect)

    def close(self, state: dict[str, Any]) -> None:
        sock = state.pop("banner", None)
        if sock is not None:
            sock.close()
