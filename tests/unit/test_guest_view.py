"""The guest-view script run for real with the host's /bin/sh, and its parser."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from explorer import guest
from explorer.errors import BackendError
from explorer.guest import viewport


def test_view_script_runs_and_parses_on_this_host():
    out = subprocess.run(["/bin/sh", "-c", guest.view_script()], capture_output=True, text=True, check=True).stdout
    view = guest.parse_view(out, channel="test")
    assert view is not None
    assert view.kernel_release == os.uname().release
    assert view.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    pids = {p.pid for p in view.processes}
    assert os.getpid() in pids  # this test's own process is in the listing
    assert all(p.pid != p.ppid for p in view.processes)


def test_parser_takes_the_last_block_and_drops_the_viewer():
    text = (
        "boot noise\nEXPLORER-VIEW begin\nkernel_release=old\nEXPLORER-VIEW end\n"
        "EXPLORER-VIEW begin\nviewer_pid=7\nkernel_release=6.1.0-28-amd64\nboot_id=abc\n"
        "proc 1 0 0 init\nproc 2 0 1 kthreadd\nproc 7 1 0 sh\nproc 9 1 0 redis-server --bind x\n"
        "EXPLORER-VIEW end\n"
    )
    view = guest.parse_view(text, channel="serial console")
    assert view.kernel_release == "6.1.0-28-amd64"
    assert [(p.pid, p.name, p.kernel_thread) for p in view.processes] == [
        (1, "init", False),
        (2, "kthreadd", True),
        (9, "redis-server --bind x", False),
    ]


def test_incomplete_block_is_none():
    assert guest.parse_view("EXPLORER-VIEW begin\nkernel_release=x\n", "c") is None


def test_a_block_still_being_printed_leaves_the_previous_one():
    text = (
        "EXPLORER-VIEW begin\nkernel_release=done\nEXPLORER-VIEW end\n"
        "EXPLORER-VIEW begin\nkernel_release=partial\nproc 1 0 0 init\n"
    )
    assert guest.parse_view(text, "c").kernel_release == "done"


def test_explorers_own_guest_processes_are_left_out_and_reported_apart():
    text = (
        "EXPLORER-VIEW begin\nviewer_pid=9\nagent_pids=1 5\nkernel_release=k\n"
        "proc 1 0 0 init\nproc 2 0 1 kthreadd\nproc 5 1 0 init\nproc 7 1 0 redis-server\n"
        "proc 9 5 0 sh\nEXPLORER-VIEW end\n"
    )
    view = guest.parse_view(text, "serial console")
    assert [p.name for p in view.processes] == ["kthreadd", "redis-server"]
    assert view.agent_pids == [1, 5]


def stale(request: int) -> bytes:
    return f"EXPLORER-VIEW begin\nrequest={request}\nkernel_release=stale\nEXPLORER-VIEW end\n".encode()


def serve_once(path: Path, answer) -> threading.Thread:
    """A stand-in for the microVM's init on its view port: answer(conn, request number) for
    each request line ("view N")."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            for line in conn.makefile("rb"):
                if not answer(conn, int(line.split()[1])):
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def real_view(conn, request: int) -> bool:
    """What the init does: the real view script, told the request it answers."""
    out = subprocess.run(
        ["/bin/sh", "-c", guest.view_script()],
        capture_output=True,
        check=True,
        env={**os.environ, "EXPLORER_VIEW_REQUEST": str(request)},
    ).stdout
    conn.sendall(out)
    return True


def test_view_channel_asks_and_takes_the_answer_to_its_own_request(tmp_path):
    def late_then_real(conn, request: int) -> bool:
        conn.sendall(stale(request - 1))  # a late answer to an earlier request that timed out
        return real_view(conn, request)

    serve_once(tmp_path / "v.sock", late_then_real)
    channel = viewport.ViewChannel(tmp_path / "v.sock")
    channel.connect(timeout_s=5)
    try:
        first, second = channel.request(timeout_s=10), channel.request(timeout_s=10)
    finally:
        channel.close()
    assert first.kernel_release == second.kernel_release == os.uname().release
    assert first.channel == "virtio-serial port explorer.view"


def test_view_channel_says_what_came_back_when_no_view_does(tmp_path):
    serve_once(tmp_path / "silent.sock", lambda conn, request: conn.sendall(b"half a line") or True)
    channel = viewport.ViewChannel(tmp_path / "silent.sock")
    channel.connect(timeout_s=5)
    with pytest.raises(BackendError, match=r"sent no view on its view port in 1s \(it sent 'half a line'\)"):
        channel.request(timeout_s=1)
    channel.close()


def test_view_channel_closed_by_the_guest_and_never_connected(tmp_path):
    serve_once(tmp_path / "gone.sock", lambda conn, request: False)
    channel = viewport.ViewChannel(tmp_path / "gone.sock")
    channel.connect(timeout_s=5)
    with pytest.raises(BackendError, match="closed before a view came back"):
        channel.request(timeout_s=5)
    channel.close()
    with pytest.raises(BackendError, match="could not connect to the guest view port"):
        viewport.ViewChannel(tmp_path / "absent.sock").connect(timeout_s=0.1)


def test_every_ssh_session_is_set_apart_and_the_listener_stays():
    """The session taking the view and another one still closing (Vagrant's, an earlier
    explorer's) are under the listening sshd: all set apart; the listener and the OS stay."""
    from explorer.guest.ssh import session_pids
    from explorer.model import GuestProcess, GuestView

    def proc(pid: int, ppid: int, name: str) -> GuestProcess:
        return GuestProcess(pid, ppid, name, False)

    listed = [
        proc(1, 0, "systemd"),
        proc(274, 1, "sshd"),
        proc(294, 274, "sshd"),  # an earlier session's [priv] process, still closing
        proc(300, 274, "sshd"),  # the viewing session: [priv]
        proc(301, 300, "sshd"),  # and its user process, the viewer's parent
        proc(310, 1, "redis-server"),
    ]
    view = GuestView("6.1", None, listed, "vagrant ssh", viewer_parent=301)
    assert session_pids(view) == [294, 300, 301]
    kept = guest.set_apart(view, session_pids(view))
    assert [p.pid for p in kept.processes] == [1, 274, 310]
    assert kept.agent_names == ["sshd", "sshd", "sshd"]
    # a viewer whose ancestry is unknown sets nothing apart (rather than a guess)
    assert session_pids(GuestView("6.1", None, listed, "vagrant ssh", viewer_parent=999)) == []
