"""The runner's pure logic on a small fake side (no engine): destroy always runs, interrupts
are deferred, repeats, per-side timeouts, sides that cannot run are skipped or refused, and
what the result document records about a side comes from its registry entry."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from explorer import lifecycle, sides
from explorer.backends.base import Backend
from explorer.contracts import EngineDefaults, SourceDefaults
from explorer.errors import BackendError, BackendUnavailable, NotReady
from explorer.model import Artifact, GuestProcess, GuestView, InsideDelivery, InsideOutput, InsideProgram, Target
from explorer.scenario import from_dict
from tests.servers import server

FAKE = lifecycle.Choice(names=("fake",))
SCENARIO_YAML = (
    '{"name": "fake", "timeouts": {"ready_s": 2}, '
    '"workload": {"image": "fake:1", "port": 6379, "processes": ["fake"], "ready": "redis"}}'
)
SCENARIO = from_dict(
    {
        "name": "fake",
        "workload": {"image": "fake:1", "port": 6379, "processes": ["fake"], "ready": "redis"},
        "timeouts": {"ready_s": 2},
    }
)


def pong(conn) -> None:
    if conn.recv(64).startswith(b"PING"):
        conn.sendall(b"+PONG\r\n")


class FakeEngine(EngineDefaults):
    """Starts a local PONG server per create; records every call (class-wide, so a test sees
    the calls of the engine the lifecycle assembled)."""

    name = "fake"
    milestones = ("created", "ready")
    calls: ClassVar[list[str]] = []
    behaviour: ClassVar[dict[str, Any]] = {}

    def __init__(self, side) -> None:
        self.side = side

    def check(self) -> dict[str, Any]:
        self.calls.append("check")
        if self.behaviour.get("unavailable"):
            raise BackendUnavailable("the fake engine is down", hint="start it")
        return {"engine": "fake", "summary": "a fake engine"}

    def create(self, scenario, artifact, run_id, index) -> Target:
        self.calls.append(f"create {index}")
        stack = contextlib.ExitStack()
        handler = (lambda conn: None) if self.behaviour.get("silent") else pong
        port = stack.enter_context(server(handler))
        target = Target(side=self.side.name, name=f"fake-{index}", run_id=run_id, host_port=port, handle=stack)
        target.mark("created")
        if self.behaviour.get("interrupt_in_create"):
            signal.raise_signal(signal.SIGINT)  # deferred until create returns its target
        return target

    def after_ready(self, target) -> None:
        if self.behaviour.get("impossible"):
            target.marks["created"] = target.marks["ready"] + 1.0  # an impossible timeline

    def host_pids(self, target) -> list[int]:
        return []

    def runtime_pids(self, target) -> dict[int, str]:
        return {}

    def logs(self, target, lines=20) -> str:
        return "fake log line"

    def destroy(self, target) -> None:
        self.calls.append(f"destroy {target.name}")
        target.handle.close()

    def settle(self) -> None:
        self.calls.append("settle")

    def clean(self, run_id=None) -> list[str]:
        self.calls.append("clean")
        return []


class FakeSource(SourceDefaults):
    def prepare(self, scenario, progress=None) -> Artifact:
        return Artifact(ref="fake:1", facts={"image_bytes": 1000})


class FakeChannel:
    def view(self, target) -> GuestView:
        if FakeEngine.behaviour.get("no_view"):
            raise BackendError("no channel into the fake guest")
        if FakeEngine.behaviour.get("interrupt_in_view"):
            signal.raise_signal(FakeEngine.behaviour["interrupt_in_view"])
        return GuestView("1.0", None, [GuestProcess(1, 0, "fake", False)], channel="fake")

    def inside(self, target, program: InsideProgram) -> InsideDelivery:
        """The fake guest is the host: the probe copied into a directory of its own and run there."""
        if FakeEngine.behaviour.get("no_inside"):
            raise BackendError("no way into the fake guest")
        with tempfile.TemporaryDirectory(prefix="explorer-fake-inside-") as home:
            path = Path(home) / program.name
            shutil.copy(program.binary, path)
            outputs = []
            for run in program.runs:
                done = subprocess.run(
                    [str(path), "--timeout", str(program.timeout_s), *run.args],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                outputs.append(InsideOutput(run.label, done.returncode, done.stdout, done.stderr, 0.01))
        return InsideDelivery(f"copied into {path} on the host (the fake guest is the host)", outputs)


def assemble(side) -> Backend:
    return Backend(side, FakeSource(), FakeEngine(side), FakeChannel())


@pytest.fixture
def fake(monkeypatch):
    side = sides.Side(
        "fake",
        "container",
        "fake container",
        f"{__name__}:assemble",
        roles=("shim",),
        about="a test double",
        color="#000000",
        max_repeats=2,
    )
    monkeypatch.setitem(sides.SIDES, "fake", side)
    FakeEngine.calls, FakeEngine.behaviour = [], {}
    return FakeEngine


def test_repeats_destroy_each_start_and_probe_the_last(fake):
    result = lifecycle.run(SCENARIO, FAKE, repeats=3)
    # an earlier instance's teardown is finished (settle) before the next start's clock runs
    assert fake.calls == [
        "check",
        "create 0",
        "destroy fake-0",
        "settle",
        "create 1",
        "destroy fake-1",
        "settle",
        "create 2",
        "destroy fake-2",
        "clean",
    ]
    side = result.sides["fake"]
    assert (side.name, side.kind, side.title, side.roles) == (
        "fake",
        "container",
        "fake container",
        ["shim"],
    )
    assert side.startup is not None and len(side.startup.repeats) == 3
    assert side.visibility is not None and side.visibility.inside.available
    assert result.phases is not None
    phases = result.phases.sides["fake"].model_dump(exclude_none=True)
    assert set(phases) == {
        "prepare_s",
        "measure_s",
        "starts_s",
        "start_s",
        "probes_s",
        "after_ready_s",
        "destroy_s",
        "clean_s",
    }
    assert len(phases["start_s"]) == 3 and phases["starts_s"] == pytest.approx(sum(phases["start_s"]), abs=0.01)
    assert phases["probes_s"] + phases["destroy_s"] + phases["starts_s"] <= phases["measure_s"] + 0.01


def test_a_slow_side_defaults_to_its_own_repeat_cap(fake):
    result = lifecycle.run(SCENARIO, FAKE)  # the scenario says 5; the side caps at 2
    startup = result.sides["fake"].startup
    assert startup is not None and len(startup.repeats) == 2


def test_not_ready_still_destroys_and_shows_the_logs(fake):
    fake.behaviour["silent"] = True
    with pytest.raises(NotReady) as caught:
        lifecycle.run(SCENARIO, FAKE, repeats=1)
    assert "fake log line" in caught.value.hint
    assert fake.calls[-2:] == ["destroy fake-0", "clean"]


def test_a_guest_view_that_cannot_be_had_is_reported_not_fatal(fake):
    fake.behaviour["no_view"] = True
    result = lifecycle.run(SCENARIO, FAKE, repeats=1)
    kernel = result.sides["fake"].kernel
    assert kernel is not None and kernel.available is False
    assert kernel.reason is not None and "no channel" in kernel.reason


def test_an_interrupt_during_create_waits_for_the_handle_then_everything_is_removed(fake):
    fake.behaviour["interrupt_in_create"] = True
    with pytest.raises(KeyboardInterrupt):
        lifecycle.run(SCENARIO, FAKE, repeats=1)
    assert fake.calls[-2:] == ["destroy fake-0", "clean"]


def test_a_side_that_cannot_run_is_skipped_by_default_and_refused_by_name(fake, monkeypatch):
    fake.behaviour["unavailable"] = True
    with pytest.raises(BackendUnavailable, match="side fake: the fake engine is down") as refused:
        lifecycle.run(SCENARIO, FAKE, repeats=1)
    assert refused.value.hint  # what to do about it
    skipped: dict[str, str] = {}
    monkeypatch.setattr(lifecycle, "SIDES", {"fake": sides.SIDES["fake"]})
    with pytest.raises(BackendUnavailable, match="no side can run"):
        lifecycle.check_sides(SCENARIO, lifecycle.Choice(), skipped)
    assert skipped == {"fake": "the fake engine is down (start it)"}


def test_a_kind_skips_what_cannot_run_while_names_refuse_naming_every_refused_side(fake, monkeypatch):
    other = sides.Side("other", "container", "other container", f"{__name__}:assemble", roles=("shim",), about="-")
    monkeypatch.setitem(sides.SIDES, "other", other)
    monkeypatch.setattr(lifecycle, "SIDES", {"fake": sides.SIDES["fake"], "other": other})
    fake.behaviour["unavailable"] = True
    with pytest.raises(BackendUnavailable) as refused:
        lifecycle.check_sides(SCENARIO, lifecycle.Choice(names=("fake", "other")), {})
    assert "side fake: the fake engine is down" in str(refused.value)
    assert "side other: the fake engine is down" in str(refused.value)
    monkeypatch.setattr(lifecycle, "of_kind", lambda kind: ("fake", "other"))
    skipped: dict[str, str] = {}
    with pytest.raises(BackendUnavailable, match="no side can run"):
        lifecycle.check_sides(SCENARIO, lifecycle.Choice(kind="container"), skipped)
    assert set(skipped) == {"fake", "other"}


def test_sides_parse():
    assert sides.parse("runc, gvisor,runc") == ("runc", "gvisor")
    assert "microvm" in sides.of_kind("vm")
    assert sides.parse(None) is None
    with pytest.raises(Exception, match="unknown side 'lxc'"):
        sides.parse("runc,lxc")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_an_interrupt_while_the_guest_view_is_taken_ends_the_run(fake, signum, monkeypatch, tmp_path, capsys):
    """An interrupt is not an error a probe may report as 'unknown': the run ends with 128 +
    the signal, its instance destroyed and its run cleaned."""
    from explorer import cli, interrupts

    previous = {sig: signal.getsignal(sig) for sig in interrupts.INTERRUPTS}
    fake.behaviour["interrupt_in_view"] = signum
    scenario_file = tmp_path / "fake.yaml"
    scenario_file.write_text(SCENARIO_YAML)
    monkeypatch.setattr(
        "sys.argv", ["explorer", "run", "--scenario-file", str(scenario_file), "--sides", "fake", "--repeat", "1"]
    )
    try:
        with pytest.raises(SystemExit) as ended:
            cli.cli()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert ended.value.code == 128 + signum
    assert fake.calls[-2:] == ["destroy fake-0", "clean"]
    err = capsys.readouterr().err
    assert f"interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
