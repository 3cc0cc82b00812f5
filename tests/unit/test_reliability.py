"""The pieces behind issue 8 that need no daemon: recipe files added by tarfile, the image
reference grammar, build tools ended with their whole session, partials told stale or live,
and name-based figures that are never judged from a name that matched nothing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pytest

from explorer import claims, image_ref
from explorer.errors import BuildError
from explorer.images import partials
from explorer.images.container.rootfs_files import add_files
from explorer.model import Artifact, GuestProcess, GuestView, owner_alive
from explorer.probes.visibility import unmatched_names
from explorer.tools import run_session


def image_tar(path: Path) -> Path:
    """A tiny rootfs the way mmdebstrap writes one: ./-prefixed, a var/run -> /run symlink."""
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name in ("./", "./etc/", "./var/", "./run/"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        link = tarfile.TarInfo("./var/run")
        link.type, link.linkname = tarfile.SYMTYPE, "/run"
        tar.addfile(link)
        data = b"old\n"
        info = tarfile.TarInfo("./etc/motd")
        info.size, info.mode = len(data), 0o600
        info.pax_headers = {"SCHILY.xattr.user.test": "kept"}
        tar.addfile(info, io.BytesIO(data))
    return path


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        return tar.extractfile(name).read()


def test_files_are_added_with_their_parents_and_replace_a_file(tmp_path):
    out = tmp_path / "out.tar"
    add_files(image_tar(tmp_path / "in.tar"), (("/etc/motd", "new\n"), ("/opt/app/conf.d/a.conf", "a\n")), out)
    found = members(out)
    assert read(out, "./etc/motd") == b"new\n" and read(out, "./opt/app/conf.d/a.conf") == b"a\n"
    assert [n for n in found if n == "./etc/motd"] == ["./etc/motd"]  # replaced, not duplicated
    assert found["./opt"].isdir() and found["./opt/app/conf.d"].isdir() and found["./opt"].mode == 0o755
    assert found["./etc/motd"].uid == 0 and found["./etc/motd"].mode == 0o644
    assert found["./var/run"].issym()  # the image's own members are copied as they were


def test_xattrs_of_the_image_survive_the_copy(tmp_path):
    out = tmp_path / "out.tar"
    add_files(image_tar(tmp_path / "in.tar"), (("/etc/new", "x"),), out)
    assert members(out)["./etc/motd"].pax_headers.get("SCHILY.xattr.user.test") == "kept"


@pytest.mark.parametrize(
    "path, cause",
    [
        ("/var/run/x.pid", "/var/run is a symlink to /run"),
        ("/etc/motd/x", "/etc/motd is not a directory"),
        ("/etc", "the image has a directory there"),
    ],
)
def test_a_file_under_a_symlink_or_over_a_directory_is_refused(tmp_path, path, cause):
    with pytest.raises(BuildError) as caught:
        add_files(image_tar(tmp_path / "in.tar"), ((path, "x"),), tmp_path / "out.tar")
    assert cause in str(caught.value)


@pytest.mark.parametrize(
    "ref",
    [
        "redis",
        "redis:7.2",
        "library/redis:7",
        "localhost:5000/a/b:c",
        "registry.example.com/x__y/z-1.2:latest",
        "mongo@sha256:" + "a" * 64,
        "Registry.Example.com/redis",
    ],
)
def test_references_docker_accepts(ref):
    assert image_ref.reference_problem(ref) is None


@pytest.mark.parametrize(
    "ref",
    [
        "Redis:7",
        "redis::7",
        "redis:",
        "redis@sha256:abc",
        "redis@sha256:" + "a" * 63,
        "-redis",
        "redis-",
        "a___b",
        "a/" + "b" * 260,
        "redis:7 ",
        "",
    ],
)
def test_references_docker_refuses(ref):
    assert image_ref.reference_problem(ref) is not None


def test_scenario_names_follow_the_repository_grammar():
    assert image_ref.scenario_name_problem("redis_7-a__b--c") is None
    for bad in ("redis-", "_redis", "a___b", "a._b", "a.b", "A", "a" * 247):
        assert image_ref.scenario_name_problem(bad), bad


SPAWNER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import os, time; os.setpgid(0, 0); time.sleep(300)"])
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
time.sleep(300)
"""


def test_a_timed_out_tool_is_ended_with_its_whole_session():
    """Children in the tool's group, and one that made a group of its own, all end."""
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_session([sys.executable, "-c", SPAWNER], timeout=1.5)
    assert time.monotonic() - started < 20
    left = [p for p in psutil.process_iter(["cmdline"]) if "time.sleep(300)" in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_partials_of_a_dead_owner_are_stale_and_a_live_ones_are_not(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        gone = tmp_path / f"{partials.ROOTFS}{dead.pid}-abc"
        running = tmp_path / f"{partials.ROOTFS}{live.pid}-abc"
        gone.mkdir(), running.mkdir()
        assert partials.stale(gone, partials.ROOTFS)[0] and not owner_alive(dead.pid)
        assert partials.stale(running, partials.ROOTFS) == (False, f"its explorer (PID {live.pid}) still runs")
        legacy = tmp_path / f"{partials.ROOTFS}k2j3_x8a"
        legacy.mkdir()
        assert not partials.stale(legacy, partials.ROOTFS)[0]  # young and whose-unknown: kept
        os.utime(legacy, (time.time() - 2 * partials.LEGACY_AGE_S,) * 2)
        assert partials.stale(legacy, partials.ROOTFS)[0]
    finally:
        live.send_signal(signal.SIGTERM)
        live.wait()


def test_a_partial_in_use_is_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / f"{partials.VM_DISK}{dead.pid}-x"  # its owner is gone, but something uses it
    path.mkdir()
    user = subprocess.Popen(["sleep", "30"], cwd=path)
    try:
        is_stale, why = partials.stale(path, partials.VM_DISK)
        assert not is_stale and f"{user.pid} sleep" in why
    finally:
        user.kill()
        user.wait()


def view(*procs: tuple[int, str]) -> GuestView:
    return GuestView("6.1", "b", [GuestProcess(pid, 0, name, False) for pid, name in procs], "docker exec")


def test_a_name_that_matches_nothing_inside_names_pid_1():
    problem = unmatched_names(view((1, "redis-server")), ("nosuchproc",), "container")
    assert problem == "no process named nosuchproc runs in the container; its PID 1 is redis-server"
    assert unmatched_names(view((1, "redis-server")), ("redis-server",), "container") is None
    assert unmatched_names(view((7, "a-very-long-nam")), ("a-very-long-name-indeed",), "vm") is None  # comm: 15
    assert "it runs redis-server" in unmatched_names(view((220, "redis-server")), ("x",), "vm")
    assert unmatched_names(None, ("x",), "vm") is None  # no view: the figures say unknown instead


def test_unconfirmed_names_make_the_visibility_claim_inconclusive():
    import json

    result = json.loads((Path(__file__).parent / "fixtures" / "container.json").read_text())
    result["sides"]["container"]["visibility"].update(
        named_on_host=None, visible_on_host=None, names_unconfirmed="no guest view"
    )
    from tests.unit.documents import typed

    verdict = next(c for c in claims.judge(typed(result)) if c.id == "visibility")
    assert verdict.verdict == claims.INCONCLUSIVE


def test_a_re_imported_image_reuses_its_vm_disk():
    from explorer import scenario
    from explorer.images.microvm.vm_image import image_key

    redis = scenario.load("redis")
    first = Artifact("explorer/redis:0123456789abcdef", facts={"image_id": "sha256:1"})
    again = Artifact("explorer/redis:0123456789abcdef", facts={"image_id": "sha256:2"})  # docker import anew
    assert image_key(redis, first) == image_key(redis, again)
    pulled = scenario.image_scenario("mongo:7", 27017, "tcp", ("mongod",))
    assert image_key(pulled, Artifact("mongo:7", facts={"image_id": "sha256:1"})) == "sha256:1"


def test_a_sighup_that_nohup_ignores_stays_ignored():
    """`nohup explorer run ...`: the hang-up nohup ignores ends nothing, in a deferred step or
    out of it, while SIGTERM still ends the run with 128 + its number."""
    code = """
import os, signal, sys
from explorer import interrupts
interrupts.install()
os.kill(os.getpid(), signal.SIGHUP)
with interrupts.deferred():
    os.kill(os.getpid(), signal.SIGHUP)
print("survived", signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, flush=True)
try:
    os.kill(os.getpid(), signal.SIGTERM)
except interrupts.Interrupted as exc:
    sys.exit(exc.exit_code)
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # what nohup does before it execs
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "survived True", result.stderr
    assert result.returncode == 128 + signal.SIGTERM
