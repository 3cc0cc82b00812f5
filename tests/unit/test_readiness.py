"""Readiness checks against small local servers that speak (or refuse to speak) the protocol."""

from __future__ import annotations

import itertools
import struct
import time
from contextlib import ExitStack

import pytest

from explorer import readiness
from explorer.errors import NotReady
from tests.servers import CUT_OFF_S, free_port, server, silent_server


def redis_like(reply: bytes):
    def handle(conn):
        conn.recv(64)
        conn.sendall(reply)

    return handle


def test_redis_pong_is_ready_and_loading_is_not():
    with server(redis_like(b"+PONG\r\n")) as port:
        assert readiness.attempt("redis", "127.0.0.1", port)
    with server(redis_like(b"-LOADING Redis is loading the dataset in memory\r\n")) as port:
        assert not readiness.attempt("redis", "127.0.0.1", port)


def test_refused_and_silent_servers_are_not_ready_without_hanging():
    assert not readiness.attempt("redis", "127.0.0.1", free_port())
    with silent_server() as port:
        started = time.monotonic()
        assert not readiness.attempt("redis", "127.0.0.1", port, timeout=0.3)
        assert time.monotonic() - started < CUT_OFF_S  # cut off by its timeout, not by the server's hold


def test_accept_then_close_is_not_ready_for_tcp():
    # Docker's port proxy accepts and then closes while nothing listens behind it.
    with server(lambda conn: None) as port:
        assert not readiness.attempt("tcp", "127.0.0.1", port)


def pg_message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def postgres_like(*messages: bytes):
    def handle(conn):
        (length,) = struct.unpack("!i", conn.recv(4))
        conn.recv(length - 4)
        conn.sendall(b"".join(messages))

    return handle


def test_postgres_starting_up_is_not_ready():
    starting = pg_message(b"E", b"SFATAL\0C57P03\0Mthe database system is starting up\0\0")
    with server(postgres_like(starting)) as port:
        assert not readiness.attempt("postgres", "127.0.0.1", port)


@pytest.mark.parametrize(
    "reply",
    [
        pg_message(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\0\0"),  # password wanted
        pg_message(b"R", struct.pack("!i", 0)) + pg_message(b"Z", b"I"),  # trust: ReadyForQuery
        pg_message(b"E", b"SFATAL\0C28000\0Mno pg_hba.conf entry\0\0"),  # serving, refuses us
    ],
)
def test_postgres_answering_backend_is_ready(reply):
    with server(postgres_like(reply)) as port:
        assert readiness.attempt("postgres", "127.0.0.1", port)


def test_wait_ready_times_out_with_a_clear_message():
    with pytest.raises(NotReady, match=r"did not answer a redis readiness check on 127\.0\.0\.1") as caught:
        readiness.wait_ready("redis", "127.0.0.1", free_port(), time.monotonic() + 0.3)
    assert str(caught.value).endswith("waited for a redis PING to be answered +PONG; last saw connection refused")
    loading = redis_like(b"-LOADING Redis is loading the dataset in memory\r\n")
    with server(loading) as port, pytest.raises(NotReady, match="last saw '-LOADING Redis is loading the dataset"):
        readiness.wait_ready("redis", "127.0.0.1", port, time.monotonic() + 0.3)


def test_wait_ready_returns_once_the_server_answers():
    port = free_port()
    calls = []

    with ExitStack() as servers:

        def between():
            calls.append(1)
            if len(calls) == 3:  # a redis starts answering on `port` after a few attempts
                servers.enter_context(server(redis_like(b"+PONG\r\n"), port))

        with pytest.raises(NotReady):
            readiness.wait_ready("redis", "127.0.0.1", free_port(), time.monotonic() + 0.2, between)
        assert readiness.wait_ready("redis", "127.0.0.1", port, time.monotonic() + 10, between) > 0


def test_the_gate_returns_on_the_poll_that_records_its_milestone_without_sleeping_after():
    """The gate of a start (nspawn's unit, a VM's network): its polls come at readiness's interval
    and the first attempt follows the poll that saw the milestone at once (a sleep after it cost
    every nspawn start 20 ms)."""
    marks: dict[str, float] = {}
    polls: list[float] = []

    def poll() -> None:
        polls.append(time.monotonic())
        if len(polls) == 3:
            marks["unit"] = polls[-1]

    started = time.monotonic()
    readiness.wait_for_mark(marks, "unit", poll, started + 5)
    returned = time.monotonic()
    assert len(polls) == 3
    assert returned - polls[-1] < readiness.INTERVAL_S / 2
    assert all(later - earlier < 3 * readiness.INTERVAL_S for earlier, later in itertools.pairwise(polls))
