"""MongoDB readiness against mockupdb, a MongoDB wire-protocol server: ready means a `ping`
answered ok (raw OP_MSG, then pymongo), never a TCP accept, and no attempt outlives its timeout.

"Not ready at once" is checked with a long attempt timeout (LONG_S) and a bound far below it, so
that a loaded machine cannot fail it; the speed of an attempt is not what these tests measure.

mockupdb 1.8 works with pymongo 4.x as long as its hello reply carries a wire version pymongo
still supports (pymongo 4.20 wants >= 9); its own default (6) makes pymongo refuse the server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from mockupdb import MockupDB, OpMsg

from explorer import readiness
from explorer.errors import NotReady
from tests.servers import free_port, server

LONG_S = 30.0  # an attempt's timeout that a wrong answer must not wait out
AT_ONCE_S = 10.0  # far below LONG_S: the attempt ended on the answer, not on its timeout
MONGO_7_HELLO = {"ismaster": True, "minWireVersion": 0, "maxWireVersion": 21}  # 21: MongoDB 7.0


@contextmanager
def mongo_server(ping: dict | None = None, hello: dict | None = None, port: int | None = None) -> Iterator[MockupDB]:
    """A wire-protocol server answering hello, and ping with `ping` (unanswered when None)."""
    server = MockupDB(port=port, auto_ismaster=hello or MONGO_7_HELLO)
    if ping is not None:
        server.autoresponds("ping", **ping)
    server.run()
    try:
        yield server
    finally:
        server.stop()


def timed(kind: str, port: int, timeout: float = readiness.ATTEMPT_TIMEOUT_S) -> tuple[bool, float]:
    started = time.monotonic()
    ok = readiness.attempt(kind, "127.0.0.1", port, timeout)
    return ok, time.monotonic() - started


def test_ping_answered_ok_is_ready_and_pymongo_really_spoke():
    with mongo_server(ping={"ok": 1}) as server:
        seen: list[dict] = []
        server.autoresponds(lambda request: seen.append(dict(request.doc)) and False)  # observe only
        ok, _ = timed("mongodb", server.port)
    assert ok is True
    pings = [doc for doc in seen if "ping" in doc]
    assert len(pings) == 2  # the raw OP_MSG ping, then pymongo's
    handshakes = [doc for doc in seen if "client" in doc]  # pymongo's hello names the client
    assert handshakes and handshakes[0]["client"]["application"]["name"] == "explorer-readiness"


def test_raw_ping_is_an_op_msg_on_admin():
    with mongo_server(ping={"ok": 1}) as server:
        requests: list = []
        server.autoresponds(lambda request: requests.append(request) and False)
        assert readiness.attempt("mongodb", "127.0.0.1", server.port)
    first = requests[0]
    assert isinstance(first, OpMsg)
    assert first.doc["ping"] == 1 and first.doc["$db"] == "admin"


def test_connection_refused_is_not_ready_quickly():
    ok, elapsed = timed("mongodb", free_port(), timeout=LONG_S)
    assert ok is False
    assert elapsed < AT_ONCE_S  # pymongo alone would wait out its whole server selection


def test_accept_then_close_is_not_ready_quickly():
    with server(lambda conn: None) as port:
        ok, elapsed = timed("mongodb", port, timeout=LONG_S)
    assert ok is False
    assert elapsed < AT_ONCE_S


def test_server_that_never_answers_is_not_ready_within_the_attempt_timeout():
    with mongo_server(ping=None) as server:  # hello answered, ping read but never answered
        ok, elapsed = timed("mongodb", server.port, timeout=0.5)
        assert ok is False
        assert 0.4 < elapsed < 0.5 + 2.0  # it waited for the answer, then gave up near its timeout
        started = time.monotonic()
        with pytest.raises(NotReady, match="mongodb readiness check"):
            readiness.wait_ready("mongodb", "127.0.0.1", server.port, started + 1.5)
        assert time.monotonic() - started < 2.2  # the deadline holds: no attempt outlives it


def test_slow_server_is_ready_once_it_answers():
    """Accepted-and-closed connections for 2 s (a port proxy), then a real server."""
    answers_after_s = 2.0
    port = free_port()
    started = time.monotonic()
    result: dict[str, float] = {}

    def wait() -> None:
        result["ready"] = readiness.wait_ready("mongodb", "127.0.0.1", port, started + 15)

    waiter = threading.Thread(target=wait)
    with server(lambda conn: None, port):
        waiter.start()
        time.sleep(answers_after_s)
    with mongo_server(ping={"ok": 1}, port=port):
        waiter.join(10)
    assert "ready" in result, "wait_ready did not return"
    # ready once the server answered, not at the deadline 15 s away
    assert answers_after_s <= result["ready"] - started < answers_after_s + 5.0


def test_ping_answered_ok_0_is_not_ready():
    with mongo_server(ping={"ok": 0, "errmsg": "not yet", "code": 91}) as server:
        ok, elapsed = timed("mongodb", server.port, timeout=LONG_S)
    assert ok is False
    assert elapsed < AT_ONCE_S


def test_server_too_old_for_pymongo_still_counts_as_up():
    """A MongoDB 3.6 (wire version 6) answers ping; pymongo 4 refuses it, the server is up."""
    with mongo_server(ping={"ok": 1}, hello={"ismaster": True, "maxWireVersion": 6}) as server:
        assert readiness.attempt("mongodb", "127.0.0.1", server.port) is True


def test_a_server_speaking_another_protocol_is_not_ready():
    def http_server(conn: socket.socket) -> None:
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with server(http_server) as port:
        ok, elapsed = timed("mongodb", port, timeout=LONG_S)
    assert ok is False
    assert elapsed < AT_ONCE_S
