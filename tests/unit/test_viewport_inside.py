"""The microVM's inside-probe protocol end to end on this host: the guest init's own serve_inside
(explorer/guest/init.sh, run by busybox sh as in the guest, its directory moved to a temporary
one) on one end of a socket pair, ViewChannel.inside on the other: the probe's bytes sent, each
run's arguments carried, what each printed brought back and parsed, the file removed, and a run
that hangs ended at the probe's own timeout."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorer.guest import viewport
from explorer.probes.inside import run as inside_run
from explorer.probes.inside.run import TIMED_OUT
from tests.unit.inside_helpers import NOBODY, needs_root, probe_binary

INIT = Path(viewport.__file__).with_name("init.sh")
BUSYBOX = shutil.which("busybox")


def _serve_inside(workdir: Path) -> str:
    """init.sh's serve_inside, with its directory moved under `workdir`, and a loop like
    serve_views' around it: one request per line read on fd 3."""
    text = INIT.read_text()
    function = re.search(r"^serve_inside\(\) \{.*?^\}$", text, re.MULTILINE | re.DOTALL)
    assert function, "init.sh has no serve_inside function"
    body = function.group(0).replace("/.explorer/", f"{workdir}/")
    loop = 'while read -r verb request size timeout runs <&3; do [ "$verb" = inside ] && serve_inside >&3; done'
    return f"BB={BUSYBOX}\n{body}\n{loop}\n"


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[tuple[viewport.ViewChannel, Path]]:
    needs_root()
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (scripts/setup-host installs it for the microVM's init)")
    host_end, guest_end = socket.socketpair()
    workdir = tmp_path / "explorer"
    workdir.mkdir()
    init = subprocess.Popen(
        [BUSYBOX, "sh", "-c", f"exec 3<&{guest_end.fileno()}\n" + _serve_inside(workdir)],
        pass_fds=(guest_end.fileno(),),
    )
    guest_end.close()
    port = viewport.ViewChannel(tmp_path / "unused.sock")
    port._sock = host_end  # connected as the engine connects QEMU's socket for the port
    try:
        yield port, workdir
    finally:
        port.close()
        init.wait(timeout=10)


def test_each_run_is_made_with_its_arguments_and_the_probe_is_removed(channel):
    port, workdir = channel
    binary = probe_binary().read_bytes()
    user = ["--uid", str(NOBODY[0]), "--gid", str(NOBODY[1])]
    answer = port.inside(binary, 20, [user, []], wait_s=60)
    assert answer.path == f"{workdir}/inside-1"
    assert [run.returncode for run in answer.runs] == [0, 0], [run.stderr for run in answer.runs]
    docs = [inside_run.parse(run.stdout) for run in answer.runs]
    assert (docs[0].user.uid, docs[0].user.gid) == NOBODY and docs[1].user.uid == 0
    assert docs[0].operations is not None and len(docs[0].operations) >= 25
    assert list(workdir.iterdir()) == []  # the probe and its stderr file removed


def test_a_hung_run_ends_at_the_probe_s_own_timeout_and_the_next_request_is_answered(channel):
    port, workdir = channel
    binary = probe_binary().read_bytes()
    hung = port.inside(binary, 1, [["--sleep-for-test", "30"]], wait_s=30)
    assert [run.returncode for run in hung.runs] == [TIMED_OUT]
    assert "--timeout reached while sleeping" in hung.runs[0].stderr
    again = port.inside(binary, 20, [[]], wait_s=60)  # the port still serves, request 2
    assert again.path.endswith("/inside-2") and again.runs[0].returncode == 0
    assert list(workdir.iterdir()) == []
