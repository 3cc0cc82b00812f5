"""The parameterised wait strategies (http, banner, postgres's PQping) against real local
servers: ready, not yet ready, wrong answer, silent and slow, and the timeout's message
naming what was waited for and what came back."""

from __future__ import annotations

import http.server
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from explorer import readiness
from explorer.errors import BackendUnavailable, NotReady
from explorer.readiness import Banner, Http, ReadySpec
from tests.servers import CUT_OFF_S, free_port, server, silent_server

# ---- http ------------------------------------------------------------------------------


class Pages(http.server.BaseHTTPRequestHandler):
    """GET answers from the server's `pages` (path -> status); `delay_s` before each answer."""

    def do_GET(self) -> None:  # http.server calls it by this name
        time.sleep(self.server.delay_s)
        self.server.seen.append(self.path)
        status = self.server.pages.get(self.path, 404)
        body = b"hello\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def web(pages: dict[str, int], delay_s: float = 0.0, port: int = 0) -> Iterator[http.server.ThreadingHTTPServer]:
    """A real http.server on 127.0.0.1, in a thread."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Pages)
    httpd.daemon_threads = True
    httpd.pages, httpd.delay_s, httpd.seen = pages, delay_s, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_http_ready_when_the_status_matches():
    with web({"/": 200, "/healthz": 204}) as httpd:
        port = httpd.server_address[1]
        assert Http().attempt("127.0.0.1", port)
        assert Http("/healthz", 204).attempt("127.0.0.1", port)
        assert httpd.seen == ["/", "/healthz"]  # real requests, not a connect


def test_http_wrong_status_is_not_ready_and_remembered():
    with web({"/": 200}) as httpd:
        check = Http("/missing", 200)
        assert not check.attempt("127.0.0.1", httpd.server_address[1])
    assert check.last_seen == "status 404 Not Found"


def test_http_refused_proxy_closed_and_another_protocol_are_not_ready():
    check = Http()
    assert not check.attempt("127.0.0.1", free_port())
    assert check.last_seen == "connection refused"
    with server(lambda conn: None) as port:  # a port proxy with nothing behind it
        assert not check.attempt("127.0.0.1", port)
    with server(lambda conn: (conn.recv(1024), conn.sendall(b"+PONG\r\n"))) as port:
        assert not check.attempt("127.0.0.1", port)
    assert "not an HTTP answer" in check.last_seen


def test_http_silent_server_is_not_ready_within_the_attempt_timeout():
    with silent_server() as port:
        check = Http()
        started = time.monotonic()
        assert not check.attempt("127.0.0.1", port, timeout=0.3)
        assert time.monotonic() - started < CUT_OFF_S  # cut off by its timeout, not by the server's hold
    assert check.last_seen == "no answer within 0.3 s"


def test_http_slow_server_answering_in_time_is_ready():
    with web({"/": 200}, delay_s=0.3) as httpd:
        assert Http().attempt("127.0.0.1", httpd.server_address[1], timeout=1.0)


def test_http_timeout_message_names_the_status_it_got():
    with web({"/": 200}) as httpd, pytest.raises(NotReady) as caught:
        readiness.wait_ready(
            ReadySpec.from_data({"http": {"path": "/missing"}}),
            "127.0.0.1",
            httpd.server_address[1],
            time.monotonic() + 2.0,
            what="the container x",
        )
    assert str(caught.value) == (
        f"the container x did not answer a http readiness check on 127.0.0.1:{httpd.server_address[1]} in time: "
        "waited for HTTP GET /missing expecting status 200; last saw status 404 Not Found"
    )


def test_http_ready_once_the_server_starts_after_refusals_and_errors():
    """Refused, then 503 (an app still warming up), then 200: wait_ready returns at the 200."""
    port = free_port()
    started = time.monotonic()
    result: dict[str, float] = {}
    waiter = threading.Thread(
        target=lambda: result.update(ready=readiness.wait_ready("http", "127.0.0.1", port, started + 15))
    )
    waiter.start()
    time.sleep(0.3)
    with web({"/": 503}, port=port):
        time.sleep(0.3)
    with web({"/": 200}, port=port):
        waiter.join(10)
    assert 0.6 <= result["ready"] - started < 2.0


# ---- banner ----------------------------------------------------------------------------


def line_server(replies: dict[bytes, bytes], greeting: bytes = b""):
    """A line protocol: an optional greeting, then each line read answered from `replies`."""

    def handle(conn):
        if greeting:
            conn.sendall(greeting)
        request = conn.recv(1024)
        if request in replies:
            conn.sendall(replies[request])

    return handle


MEMCACHED = {b"version\r\n": b"VERSION 1.6.18\r\n"}


def test_banner_memcached_version_is_ready():
    with server(line_server(MEMCACHED)) as port:
        check = Banner(send="version\r\n", expect="VERSION")
        assert check.attempt("127.0.0.1", port)
    assert check.last_seen == "the line 'VERSION 1.6.18'"


def test_banner_ssh_speaks_first():
    with server(line_server({}, greeting=b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")) as port:
        assert Banner(expect="SSH-").attempt("127.0.0.1", port)
        assert Banner().attempt("127.0.0.1", port)  # no expectation: any line will do


def test_banner_wrong_answer_is_not_ready():
    with server(line_server({b"version\r\n": b"ERROR\r\n"})) as port:
        check = Banner(send="version\r\n", expect="VERSION")
        assert not check.attempt("127.0.0.1", port)
    assert check.last_seen == "the line 'ERROR'"


def test_banner_closed_refused_and_silent_are_not_ready():
    check = Banner(send="version\r\n", expect="VERSION")
    with server(lambda conn: None) as port:
        assert not check.attempt("127.0.0.1", port)
    assert "closed" in check.last_seen  # without a line, or reset: the request went unread
    assert not check.attempt("127.0.0.1", free_port())
    with silent_server() as port:
        started = time.monotonic()
        assert not check.attempt("127.0.0.1", port, timeout=0.3)
        assert time.monotonic() - started < CUT_OFF_S  # cut off by its timeout, not by the server's hold
    assert check.last_seen == "no line within 0.3 s"


def test_banner_slow_line_in_pieces_is_read_whole():
    def slow(conn):
        conn.recv(1024)
        for piece in (b"VER", b"SION 1.6", b".18\r\n"):
            conn.sendall(piece)
            time.sleep(0.1)

    with server(slow) as port:
        assert Banner(send="version\r\n", expect="VERSION 1.6.18").attempt("127.0.0.1", port)


def test_banner_unfinished_line_times_out_saying_so():
    def unfinished(conn):
        conn.recv(1024)
        conn.sendall(b"VERSI")
        time.sleep(1.5)

    with server(unfinished) as port:
        check = Banner(send="version\r\n", expect="VERSION")
        assert not check.attempt("127.0.0.1", port, timeout=0.3)
    assert check.last_seen == "an unfinished line 'VERSI'"


def test_banner_ready_after_wrong_answers():
    answers = iter([b"SERVER_ERROR starting\r\n"] * 3)

    def warming_up(conn):
        conn.recv(1024)
        conn.sendall(next(answers, b"VERSION 1.6.18\r\n"))

    with server(warming_up) as port:
        spec = readiness.parse("banner:version\\r\\n:VERSION")
        assert readiness.wait_ready(spec, "127.0.0.1", port, time.monotonic() + 5) > 0


# ---- postgres: libpq's PQping against a fake server speaking just enough protocol ---------


def pg_message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


STARTING_UP = pg_message(b"E", b"SFATAL\0C57P03\0Mthe database system is starting up\0\0")
ACCEPTING = pg_message(b"R", struct.pack("!i", 0)) + pg_message(b"Z", b"I")  # AuthenticationOk, ReadyForQuery


def fake_postgres(*answers: bytes):
    """Reads libpq's startup packet, answers with the next of `answers` (the last one repeats)."""
    queue = list(answers)

    def handle(conn):
        (length,) = struct.unpack("!i", conn.recv(4))
        startup = conn.recv(length - 4)
        assert startup[:4] == struct.pack("!i", 196608)  # protocol 3.0: no SSLRequest first
        conn.sendall(queue.pop(0) if len(queue) > 1 else queue[0])
        conn.recv(64)  # libpq's Terminate, or its close

    return handle


def test_pqping_accepting_is_ready_and_starting_up_is_not():
    with server(fake_postgres(ACCEPTING)) as port:
        check = readiness.STRATEGIES["postgres"]()
        assert check.attempt("127.0.0.1", port)
        assert check.last_seen.startswith("PQPING_OK")
    with server(fake_postgres(STARTING_UP)) as port:
        assert not check.attempt("127.0.0.1", port)
        assert check.last_seen.startswith("PQPING_REJECT")


def test_pqping_ready_once_the_server_stops_starting_up():
    with server(fake_postgres(STARTING_UP, STARTING_UP, ACCEPTING)) as port:
        assert readiness.wait_ready("postgres", "127.0.0.1", port, time.monotonic() + 10) > 0


def test_pqping_timeout_says_the_server_was_starting_up():
    with server(fake_postgres(STARTING_UP)) as port, pytest.raises(NotReady) as caught:
        readiness.wait_ready("postgres", "127.0.0.1", port, time.monotonic() + 0.3)
    assert "waited for libpq's PQping to answer PQPING_OK; last saw PQPING_REJECT" in str(caught.value)


def test_pqping_of_a_silent_server_is_cut_off_at_the_attempt_timeout():
    """libpq's own connect_timeout is at least 2 s; the attempt still ends at its own."""
    with silent_server() as port:
        check = readiness.STRATEGIES["postgres"]()
        started = time.monotonic()
        assert not check.attempt("127.0.0.1", port, timeout=0.4)
        assert time.monotonic() - started < 1.8  # before libpq's own 2 s cut-off: the attempt's own timeout
    assert check.last_seen == "no answer from PQping within 0.4 s"


def test_pqping_leaves_other_threads_running():
    """A ping in progress must not hold the GIL (a VM's console watcher stamps its lines)."""
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    with server(lambda conn: time.sleep(1.0)) as port:
        thread = threading.Thread(target=ticker)
        thread.start()
        readiness.STRATEGIES["postgres"]().attempt("127.0.0.1", port, timeout=0.5)
        stop.set()
        thread.join()
    assert len(ticks) >= 20


def test_pqping_refused_and_proxy_closed_are_no_response():
    check = readiness.STRATEGIES["postgres"]()
    assert not check.attempt("127.0.0.1", free_port())
    with server(lambda conn: None) as port:
        assert not check.attempt("127.0.0.1", port)
    assert check.last_seen.startswith("PQPING_NO_RESPONSE")


def test_without_libpq_postgres_readiness_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg.pq.pq_ctypes", None)  # as if libpq5 were not installed
    with pytest.raises(BackendUnavailable, match="PostgreSQL readiness needs libpq") as caught:
        readiness.attempt("postgres", "127.0.0.1", free_port())
    assert "libpq5" in caught.value.hint


# ---- tcp and the registry ---------------------------------------------------------------


def test_tcp_counts_a_held_connection_from_the_moment_it_was_accepted():
    check = readiness.STRATEGIES["tcp"]()
    with server(lambda conn: time.sleep(1.0)) as port:  # a server waiting for its client to speak
        started = time.monotonic()
        assert check.attempt("127.0.0.1", port)
        returned = time.monotonic()
    assert check.last_seen == "accepted, then held open for 0.5 s"
    assert returned - started >= check.SETTLE_S  # it held the connection for the settle window...
    # ...and dates readiness at the accept, a settle window before it returned
    assert check.ready_at is not None and started <= check.ready_at <= returned - check.SETTLE_S
    with server(lambda conn: conn.sendall(b"hello\r\n")) as port:  # a server that speaks first
        assert check.attempt("127.0.0.1", port) and check.last_seen == "accepted, then data"


def test_tcp_is_not_fooled_by_a_proxy_with_nothing_behind_it():
    """Docker's userland proxy and QEMU's hostfwd accept, try the workload's port behind them,
    and close the client's connection when that is refused: after a few milliseconds, not at once."""
    check = readiness.STRATEGIES["tcp"]()
    with server(lambda conn: time.sleep(0.05)) as port:
        assert not check.attempt("127.0.0.1", port)
    assert check.last_seen.startswith("accepted, then closed at once") and check.ready_at is None
    assert "weakest" in check.WARNING


def test_waiting_with_tcp_returns_the_accept_time():
    with server(lambda conn: time.sleep(1.0)) as port:
        started = time.monotonic()
        ready = readiness.wait_ready("tcp", "127.0.0.1", port, started + 5)
        returned = time.monotonic()
    # the accept's time, a settle window before the check returned
    assert started <= ready <= returned - readiness.STRATEGIES["tcp"].SETTLE_S


def test_every_strategy_describes_itself_and_has_kind_as_its_key():
    for kind, cls in readiness.STRATEGIES.items():
        assert cls.KIND == kind
        assert cls().describe()
        assert cls().last_seen.startswith("nothing")
