"""The strategies: one small dataclass each, its fields its parameters (see base.Strategy)."""

from __future__ import annotations

import http.client
import importlib
import math
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from explorer.errors import BackendUnavailable
from explorer.readiness.base import Strategy, connect, recv_exactly, shown


@dataclass
class Redis(Strategy):
    KIND: ClassVar[str] = "redis"

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        """PING answered by +PONG (a -LOADING error means the server is still loading)."""
        with connect(host, port, timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
        return reply.startswith(b"+PONG"), shown(reply.split(b"\r\n")[0]) if reply else "the connection closed"

    def describe(self) -> str:
        return "a redis PING to be answered +PONG"


@dataclass
class Postgres(Strategy):
    """libpq's PQping (what pg_isready uses), through psycopg's ctypes binding to the host's
    libpq: a ctypes call releases the GIL, so an attempt can be cut off at its timeout while
    other threads (a VM's console watcher) keep running; psycopg's compiled binding holds the
    GIL for the whole blocking call, up to libpq's 2 s minimum connect_timeout."""

    KIND: ClassVar[str] = "postgres"
    ANSWERS: ClassVar[dict[str, str]] = {
        "OK": "PQPING_OK (accepting connections)",
        "REJECT": "PQPING_REJECT (the server is up but rejects connections: starting up)",
        "NO_RESPONSE": "PQPING_NO_RESPONSE (no PostgreSQL answer)",
        "NO_ATTEMPT": "PQPING_NO_ATTEMPT (bad connection parameters)",
    }

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        pq = libpq()
        conninfo = (
            f"host={host} port={port} user=postgres dbname=postgres sslmode=disable gssencmode=disable "
            f"connect_timeout={max(2, math.ceil(timeout))} application_name=explorer-readiness"
        )
        answer: list[int] = []
        worker = threading.Thread(
            target=lambda: answer.append(pq.PGconn.ping(conninfo.encode())), name="explorer-pqping", daemon=True
        )
        worker.start()
        worker.join(timeout)  # an abandoned ping ends by itself at libpq's connect_timeout
        if not answer:
            return False, f"no answer from PQping within {timeout:.1f} s"
        from psycopg.pq import (
            Ping,  # loaded with libpq by libpq() above, only for PostgreSQL
        )

        name = Ping(answer[0]).name
        return name == "OK", self.ANSWERS.get(name, name)

    def describe(self) -> str:
        return "libpq's PQping to answer PQPING_OK"


def libpq() -> Any:
    """psycopg's ctypes binding to the host's libpq, or BackendUnavailable saying how to get it."""
    try:
        return importlib.import_module("psycopg.pq.pq_ctypes")
    except ImportError as exc:
        raise BackendUnavailable(
            f"PostgreSQL readiness needs libpq: {exc}", hint="run scripts/setup-host (or apt-get install libpq5)"
        ) from exc


@dataclass
class MongoDB(Strategy):
    KIND: ClassVar[str] = "mongodb"

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        """The `ping` command answered ok: first on a raw OP_MSG, then by pymongo.

        The raw ping fails in milliseconds on a refused or proxy-closed connection, where
        pymongo would wait out its server selection (heartbeats are >= 500 ms apart), so the
        wait loop keeps its 50 ms resolution. pymongo's ping is the verdict a real driver gets.
        """
        if not _op_msg_ok(host, port, timeout, {"ping": 1, "$db": "admin"}):
            return False, "no ok answer to a raw OP_MSG ping"
        # pymongo costs ~180 ms to import: loaded only when a MongoDB workload is checked
        import pymongo
        from pymongo.errors import ConfigurationError, PyMongoError  # with pymongo, as above

        ms = max(1, int(timeout * 1000))
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            host,
            port,
            directConnection=True,
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            socketTimeoutMS=ms,
            timeoutMS=ms,
            retryReads=False,
            appname="explorer-readiness",
        )
        try:
            ok = client.admin.command("ping").get("ok") == 1
            return ok, "ping answered ok: 1" if ok else "ping answered without ok: 1"
        except ConfigurationError:
            return True, "a server older than pymongo supports: it answered, so it is up"
        except PyMongoError as exc:
            return False, f"pymongo: {type(exc).__name__}"
        finally:
            client.close()

    def describe(self) -> str:
        return "a MongoDB ping to be answered ok: 1"


_OP_MSG = 2013
_MAX_REPLY_BYTES = 48 * 1024 * 1024  # mongod's own maxMessageSizeBytes


def _op_msg_ok(host: str, port: int, timeout: float, command: dict[str, object]) -> bool:
    """Send one OP_MSG command on a fresh connection; True when the reply says ok: 1."""
    import bson  # pymongo's, loaded only when a MongoDB workload is checked (see MongoDB.check)
    from bson.errors import BSONError

    body = struct.pack("<I", 0) + b"\0" + bson.encode(command)
    request_id = int(time.monotonic_ns() & 0x7FFFFFFF)
    with connect(host, port, timeout) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(body), request_id, 0, _OP_MSG) + body)
        length, _, response_to, opcode = struct.unpack("<iiii", recv_exactly(sock, 16))
        if opcode != _OP_MSG or response_to != request_id or not 21 <= length <= _MAX_REPLY_BYTES:
            return False
        payload = recv_exactly(sock, length - 16)
    if payload[4:5] != b"\0":
        return False  # the first section of a reply is its body document
    (doc_len,) = struct.unpack("<i", payload[5:9])
    try:
        reply = bson.decode(payload[5 : 5 + doc_len])
    except BSONError:
        return False
    return reply.get("ok") == 1


@dataclass
class Http(Strategy):
    """A real HTTP/1.1 request, judged by its response status (a web server, an API)."""

    KIND: ClassVar[str] = "http"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"type": "string", "pattern": r"^/\S*$"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
    }

    path: str = "/"
    status: int = 200

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", self.path, headers={"User-Agent": "explorer-readiness", "Connection": "close"})
            response = conn.getresponse()
            response.read(64 * 1024)
        finally:
            conn.close()
        return response.status == self.status, f"status {response.status} {response.reason}".rstrip()

    def describe(self) -> str:
        return f"HTTP GET {self.path} expecting status {self.status}"


@dataclass
class Banner(Strategy):
    """A line protocol: send `send` (if any), read one line, find `expect` in it. memcached
    answers `version\\r\\n` with `VERSION ...`; SSH, SMTP and FTP servers speak first."""

    KIND: ClassVar[str] = "banner"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = {
        "send": {"type": "string"},
        "expect": {"type": "string"},
    }
    MAX_LINE: ClassVar[int] = 4096

    send: str = ""
    expect: str = ""

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        with connect(host, port, timeout) as sock:
            if self.send:
                sock.sendall(self.send.encode())
            line = b""
            while b"\n" not in line and len(line) < self.MAX_LINE:
                try:
                    chunk = sock.recv(self.MAX_LINE - len(line))
                except TimeoutError:
                    return False, f"an unfinished line {shown(line)}" if line else f"no line within {timeout:.1f} s"
                if not chunk:
                    break
                line += chunk
        line = line.split(b"\n")[0].rstrip(b"\r")
        if not line:
            return False, "the connection closed without a line"
        return self.expect in line.decode("utf-8", "replace"), f"the line {shown(line)}"

    def describe(self) -> str:
        sent = f" after sending {self.send!r}" if self.send else ""
        return f"a line containing {self.expect!r}{sent}" if self.expect else f"a line{sent}"


@dataclass
class Tcp(Strategy):
    """The weakest readiness: a connection accepted and held. Docker's port proxy and QEMU's
    hostfwd accept a connection before anything listens behind them; with nothing there, they
    close it as soon as the connection behind them is refused, so a connection still open after
    a settle window (or one that brought data, a banner) counts, at the moment it was accepted.
    A proxy that cannot reach the workload's host at all (a VM whose network is not up yet)
    holds the connection open: sides gate readiness on their network milestone for that, and the
    timeline check catches what is left."""

    KIND: ClassVar[str] = "tcp"
    WARNING: ClassVar[str | None] = (
        "readiness was a TCP connect held open for 0.5 s (ready: tcp), the weakest check: a proxy in "
        "front of a workload that is not reachable yet can hold a connection open too"
    )
    SETTLE_S: ClassVar[float] = 0.5

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        with connect(host, port, timeout) as sock:
            accepted = time.monotonic()
            sock.settimeout(self.SETTLE_S)
            try:
                data = sock.recv(1)  # data, e.g. a banner: up
            except TimeoutError:
                self.ready_at = accepted  # a server waiting for the client to speak
                return True, f"accepted, then held open for {self.SETTLE_S:g} s"
        if data:
            self.ready_at = accepted
            return True, "accepted, then data"
        return False, "accepted, then closed at once (a proxy with nothing listening behind it)"

    def describe(self) -> str:
        return f"a TCP connection accepted and held open for {self.SETTLE_S:g} s"
