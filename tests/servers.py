"""Small local TCP servers for readiness tests: they speak (or refuse to speak) a protocol."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from explorer.model import free_port

__all__ = ["CUT_OFF_S", "free_port", "server", "silent_server"]


@contextmanager
def server(handler: Callable[[socket.socket], None], port: int = 0) -> Iterator[int]:
    """A one-thread TCP server on 127.0.0.1 (on `port`, or a free one) calling handler(conn)
    per connection, then closing it: `lambda conn: None` is what Docker's port proxy and
    QEMU's hostfwd do before the server listens (accept, close)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    handler(conn)
                except OSError:
                    pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


SILENT_HOLD_S = 30.0  # how long a silent server holds a connection
CUT_OFF_S = 10.0  # far below SILENT_HOLD_S: an attempt ended by then was cut off by its own timeout


@contextmanager
def silent_server(hold_s: float = SILENT_HOLD_S) -> Iterator[int]:
    """A server that accepts and then says nothing for `hold_s` (released at exit): an attempt
    that returns long before `hold_s` was cut off by its own timeout, on any machine's load."""
    release = threading.Event()
    with server(lambda conn: release.wait(hold_s)) as port:
        try:
            yield port
        finally:
            release.set()
