"""The contract of a wait strategy, and the socket helpers the strategies share."""

from __future__ import annotations

import dataclasses
import http.client
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

ATTEMPT_TIMEOUT_S = 1.0


@dataclass
class Strategy:
    """One way of asking 'are you ready?'. Subclasses set KIND, describe their parameters
    (dataclass fields) as JSON schemas in PARAMS, and implement `check`."""

    KIND: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = {}
    WARNING: ClassVar[str | None] = None  # shown in the report when this strategy was used

    last_seen: str = field(default="nothing: no attempt was made", init=False, compare=False, repr=False)
    # when the evidence of readiness arrived, where it came before the check returned (tcp waits
    # out a settle window after the connection it counts): None, the moment the check returned
    ready_at: float | None = field(default=None, init=False, compare=False, repr=False)

    def attempt(self, host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
        """One attempt; a connection problem means 'not yet' (and is remembered), never raises."""
        self.ready_at = None
        try:
            ready, self.last_seen = self.check(host, port, timeout)
        except TimeoutError:
            ready, self.last_seen = False, f"no answer within {timeout:.1f} s"
        except (OSError, struct.error, http.client.HTTPException) as exc:
            ready, self.last_seen = False, _failure(exc)
        return ready

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        """(ready?, what the server answered, in words)."""
        raise NotImplementedError

    def describe(self) -> str:
        """What this strategy waits for, in words."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


def _failure(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "connection closed by the peer"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer ({type(exc).__name__}: {exc})"
    return str(exc) or type(exc).__name__


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connection whose every operation gives up after `timeout`."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed before a whole answer")
        data += chunk
    return data


def shown(data: bytes, limit: int = 60) -> str:
    """Bytes a server sent, quoted and cut short for a message."""
    text = data.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= limit else text[:limit] + "...")
