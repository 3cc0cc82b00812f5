"""Protocol-level readiness: a workload is ready when a client gets a real answer from it.

A TCP accept is not enough (Docker's port proxy and QEMU's hostfwd both accept before the
server listens), and a log line can come too early, so each check speaks the protocol.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Mapping

from explorer.errors import NotReady

ATTEMPT_TIMEOUT_S = 1.0
INTERVAL_S = 0.05


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by peer")
        data += chunk
    return data


def redis_ready(host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
    """PING answered by +PONG (a -LOADING error means the server is still loading)."""
    with _connect(host, port, timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def postgres_ready(host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
    """A startup message answered by a backend: an authentication request or ReadyForQuery.

    Only the error 57P03 ('the database system is starting up') means not ready; any other
    answer (a password request, a pg_hba refusal) comes from a postmaster that serves.
    """
    params = b"user\0postgres\0database\0postgres\0\0"
    startup = struct.pack("!ii", 8 + len(params), 196608) + params  # protocol 3.0
    with _connect(host, port, timeout) as sock:
        sock.sendall(startup)
        while True:
            kind = _recv_exactly(sock, 1)
            (length,) = struct.unpack("!i", _recv_exactly(sock, 4))
            body = _recv_exactly(sock, length - 4)
            if kind == b"E":
                return _sqlstate(body) != "57P03"  # cannot_connect_now: still starting
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                return True  # the server asks for a password: it is up and serving
            if kind == b"Z":
                sock.sendall(b"X\0\0\0\x04")  # Terminate, politely
                return True


def _sqlstate(error_body: bytes) -> str:
    for field in error_body.split(b"\0"):
        if field[:1] == b"C":
            return field[1:].decode()
    return ""


def mongodb_ready(host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
    """The `ping` command answered ok: first on a raw OP_MSG, then by pymongo.

    The raw ping fails in milliseconds on a refused or proxy-closed connection, where
    pymongo would wait out its server selection (heartbeats are >= 500 ms apart), so the
    wait loop keeps its 50 ms resolution. pymongo's ping is the verdict a real driver gets.
    """
    if not _op_msg_ok(host, port, timeout, {"ping": 1, "$db": "admin"}):
        return False
    import pymongo
    from pymongo.errors import ConfigurationError, PyMongoError

    ms = max(1, int(timeout * 1000))
    client = pymongo.MongoClient(
        host, port, directConnection=True, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
        socketTimeoutMS=ms, timeoutMS=ms, retryReads=False, appname="explorer-readiness",
    )
    try:
        return client.admin.command("ping").get("ok") == 1
    except ConfigurationError:
        return True  # a server older than this pymongo supports: it answered, so it is up
    except PyMongoError:
        return False
    finally:
        client.close()


_OP_MSG = 2013
_MAX_REPLY_BYTES = 48 * 1024 * 1024  # mongod's own maxMessageSizeBytes


def _op_msg_ok(host: str, port: int, timeout: float, command: dict[str, object]) -> bool:
    """Send one OP_MSG command on a fresh connection; True when the reply says ok: 1."""
    import bson
    from bson.errors import BSONError

    body = struct.pack("<I", 0) + b"\0" + bson.encode(command)
    request_id = int(time.monotonic_ns() & 0x7FFFFFFF)
    with _connect(host, port, timeout) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(body), request_id, 0, _OP_MSG) + body)
        length, _, response_to, opcode = struct.unpack("<iiii", _recv_exactly(sock, 16))
        if opcode != _OP_MSG or response_to != request_id or not 21 <= length <= _MAX_REPLY_BYTES:
            return False
        payload = _recv_exactly(sock, length - 16)
    if payload[4:5] != b"\0":
        return False  # the first section of a reply is its body document
    (doc_len,) = struct.unpack("<i", payload[5:9])
    try:
        reply = bson.decode(payload[5 : 5 + doc_len])
    except BSONError:
        return False
    return reply.get("ok") == 1


def tcp_ready(host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
    """Last resort: the connection is accepted and not closed at once by a proxy."""
    with _connect(host, port, timeout) as sock:
        sock.settimeout(0.2)
        try:
            return sock.recv(1) != b""  # data, e.g. a banner: up
        except TimeoutError:
            return True  # open and silent: a server waiting for the client to speak


CHECKS: dict[str, Callable[[str, int, float], bool]] = {
    "redis": redis_ready,
    "postgres": postgres_ready,
    "mongodb": mongodb_ready,
    "tcp": tcp_ready,
}


def attempt(kind: str, host: str, port: int, timeout: float = ATTEMPT_TIMEOUT_S) -> bool:
    """One readiness attempt; connection problems mean 'not yet', never an exception."""
    try:
        return CHECKS[kind](host, port, timeout)
    except (OSError, ConnectionError, struct.error):
        return False


def wait_ready(
    kind: str,
    host: str,
    port: int,
    deadline: float,
    between: Callable[[], None] | None = None,
    what: str = "the workload",
) -> float:
    """Retry `attempt` until it succeeds; return the monotonic time it did.

    `between` runs after each failed attempt (a backend's poll, which may raise if the
    workload died). Raises NotReady once `deadline` (monotonic) passes.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReady(f"{what} did not answer a {kind} readiness check on {host}:{port} in time")
        if attempt(kind, host, port, min(ATTEMPT_TIMEOUT_S, remaining)):
            return time.monotonic()
        if between is not None:
            between()
        time.sleep(min(INTERVAL_S, max(0.0, deadline - time.monotonic())))


def wait_for_mark(marks: Mapping[str, object], name: str | None, poll: Callable[[], None], deadline: float) -> None:
    """Poll until `name` is among `marks` (a backend's milestones, which `poll` records; it may
    raise if the workload died). At the deadline this returns: readiness reports the timeout."""
    while name and name not in marks and time.monotonic() < deadline:
        poll()
        time.sleep(0.02)
