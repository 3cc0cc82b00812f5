"""The seccomp evaluator against filters libseccomp built from a known allow set (Debian's
python3-seccomp, which only the system python can import: each filter is built in a
/usr/bin/python3 child), and the ptrace reader against a live process running under one."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorer.load import trace
from explorer.output import costs
from explorer.probes import seccomp, seccomp_bpf
from explorer.probes.seccomp_bpf import ALLOWED, CONDITIONAL, DENIED
from tests.unit.documents import partial

SYSTEM_PYTHON = "/usr/bin/python3"
KNOWN = ["read", "write", "exit_group", "futex", "epoll_wait", "accept4", "close", "mmap", "rt_sigreturn"]
ARG_COMPARED = "personality"  # allowed for one argument value only
# What the sleeping child needs to stay alive under its own filter (and to be killed by a signal).
CHILD_NEEDS = ["exit", "clock_nanosleep", "nanosleep", "restart_syscall", "rt_sigaction", "rt_sigprocmask", "select"]

BUILD = """
import errno, json, sys, seccomp
spec = json.loads(sys.argv[1])
default = {"errno": seccomp.ERRNO(errno.EPERM), "kill": seccomp.KILL, "allow": seccomp.ALLOW}
action = {"allow": seccomp.ALLOW, "log": seccomp.LOG, "errno": seccomp.ERRNO(errno.EPERM), "trace": seccomp.TRACE(1)}
f = seccomp.SyscallFilter(defaction=default[spec["default"]])
for name, what in spec["rules"].items():
    f.add_rule(action[what], name)
for name, value in spec.get("arg_eq", {}).items():
    f.add_rule(seccomp.ALLOW, name, seccomp.Arg(0, seccomp.EQ, value))
with open(sys.argv[2], "wb") as out:
    f.export_bpf(out)
if spec.get("load"):
    f.load()
    print("loaded", flush=True)
    import time
    time.sleep(120)
"""


def _no_libseccomp_binding() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    found = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True, check=False)
    if found.returncode:
        return f"{SYSTEM_PYTHON} cannot import seccomp (apt-get install python3-seccomp; scripts/setup-host does)"
    return None


NO_BINDING = _no_libseccomp_binding()
needs_binding = pytest.mark.skipif(NO_BINDING is not None, reason=str(NO_BINDING))


def build(tmp_path: Path, name: str = "f", **spec: object) -> bytes:
    """libseccomp's BPF for `spec` (default action, {call: action}, {call: argument 0 value})."""
    out = tmp_path / f"{name}.bpf"
    subprocess.run([SYSTEM_PYTHON, "-c", BUILD, json.dumps(spec), str(out)], check=True, timeout=30)
    return out.read_bytes()


def by_class(found: dict[str, str]) -> dict[str, set[str]]:
    return {cls: {n for n, c in found.items() if c == cls} for cls in seccomp_bpf.CLASSES}


@needs_binding
def test_an_allow_list_is_allowed_exactly_and_an_argument_rule_is_conditional(tmp_path):
    program = build(tmp_path, default="errno", rules=dict.fromkeys(KNOWN, "allow"), arg_eq={ARG_COMPARED: 8})
    got = by_class(seccomp_bpf.classes((program,)))
    _, calls = seccomp_bpf.native_calls()
    assert got[ALLOWED] == set(KNOWN)
    assert got[CONDITIONAL] == {ARG_COMPARED}
    assert got[DENIED] == set(calls.values()) - set(KNOWN) - {ARG_COMPARED}


@needs_binding
def test_only_the_calls_named_are_evaluated_and_each_as_the_whole_evaluation_says(tmp_path):
    """The inside probe's cross-check asks for its operations' calls only: the same classes."""
    program = build(tmp_path, default="errno", rules=dict.fromkeys(KNOWN, "allow"), arg_eq={ARG_COMPARED: 8})
    whole = seccomp_bpf.classes((program,))
    named = frozenset([*KNOWN[:2], ARG_COMPARED, "mount", "no_such_call"])
    some = seccomp_bpf.classes((program,), only=named)
    assert set(some) == named - {"no_such_call"}
    assert some == {name: whole[name] for name in some}
    assert set(seccomp.classes(seccomp.Reading(1, "disabled", 0), only=named) or {}) == set(some)


@needs_binding
def test_a_deny_list_denies_exactly_and_log_lets_through_while_trace_does_not(tmp_path):
    rules = {"ptrace": "errno", "kexec_load": "errno", "getpid": "log", "uname": "trace"}
    got = by_class(seccomp_bpf.classes((build(tmp_path, default="allow", rules=rules),)))
    assert got[DENIED] == {"ptrace", "kexec_load", "uname"}
    assert got[CONDITIONAL] == set()
    assert "getpid" in got[ALLOWED]


@needs_binding
def test_stacked_filters_take_the_most_restrictive(tmp_path):
    first = build(tmp_path, "a", default="errno", rules=dict.fromkeys(["read", "write", "close"], "allow"))
    second = build(tmp_path, "b", default="kill", rules=dict.fromkeys(["write", "close", "futex"], "allow"))
    got = by_class(seccomp_bpf.classes((first, second)))
    assert got[ALLOWED] == {"write", "close"}
    arch, calls = seccomp_bpf.native_calls()
    read_nr = next(nr for nr, name in calls.items() if name == "read")
    # read: ERRNO from the first, KILL (libseccomp's KILL_THREAD) from the second: the kill wins
    actions = seccomp_bpf.outcomes(tuple(map(seccomp_bpf.decode, (first, second))), read_nr, arch)
    assert len(actions) == 1 and seccomp_bpf.rank(actions.pop()) < seccomp_bpf.rank(ERRNO)


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


LD_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
ERRNO = 0x00050000


def test_a_word_once_compared_is_remembered_on_its_path():
    """arg0 == 5 ? (arg0 == 5 ? ALLOW : KILL) : ALLOW: the KILL is on no possible path, so
    the call is allowed; without remembering what a path learnt of arg0 it would look
    conditional."""
    program = b"".join(
        [
            _insn(LD_ABS, 16),
            _insn(JEQ_K, 5, 0, 3),
            _insn(LD_ABS, 16),
            _insn(JEQ_K, 5, 1, 0),
            _insn(RET_K, seccomp_bpf.KILL_PROCESS),
            _insn(RET_K, seccomp_bpf.ALLOW),
        ]
    )
    assert seccomp_bpf.outcomes((seccomp_bpf.decode(program),), 0, 0xC000003E) == {seccomp_bpf.ALLOW}
    # the same with another argument compared second: both ways are possible
    other = program[:16] + _insn(LD_ABS, 24) + program[24:]
    assert seccomp_bpf.class_of(seccomp_bpf.outcomes((seccomp_bpf.decode(other),), 0, 0xC000003E)) == CONDITIONAL


def test_a_program_the_kernel_would_refuse_is_an_error_not_a_guess():
    with pytest.raises(seccomp_bpf.FilterError):
        seccomp_bpf.outcomes((seccomp_bpf.decode(_insn(LD_ABS, 70) + _insn(RET_K, 0)),), 0, 0)
    with pytest.raises(seccomp_bpf.FilterError):
        seccomp_bpf.decode(b"\x00" * 12)


def test_unfiltered_and_strict_modes():
    _, calls = seccomp_bpf.native_calls()
    assert set(seccomp.classes(seccomp.Reading(1, "disabled", 0)).values()) == {ALLOWED}
    strict = by_class(seccomp.classes(seccomp.Reading(1, "strict", 0)))
    assert strict[ALLOWED] == {"read", "write", "exit", "rt_sigreturn"}
    assert len(calls) > 300  # x86_64 has ~370 named calls; a short table is a wrong one


def test_a_role_with_a_process_not_read_says_so_and_counts_only_those_read():
    readable = seccomp.Reading(1, "disabled", 0)
    stub = seccomp.Reading(2, "filter", 1, reason="already traced by PID 9 (runsc-sandbox)")
    got = seccomp.figures([readable, stub], [seccomp.classes(readable), None])
    assert got["read"] is False and "1 of 2 not read: already traced by PID 9" in got["reason"]
    assert got["allowed"] == got["total"] == len(seccomp_bpf.native_calls()[1])
    none = seccomp.figures([stub], [None])
    assert none["allowed"] is None and none["total"] is None and none["read"] is False
    assert seccomp.union([{"a": DENIED, "b": CONDITIONAL}, {"a": CONDITIONAL, "b": ALLOWED}]) == {
        "a": CONDITIONAL,
        "b": ALLOWED,
    }


@pytest.fixture
def filtered_child(tmp_path) -> Iterator[tuple[subprocess.Popen[str], bytes]]:
    """A /usr/bin/python3 child that loaded a libseccomp filter and sleeps; its exported BPF."""
    if NO_BINDING:
        pytest.skip(NO_BINDING)
    rules = dict.fromkeys(KNOWN + CHILD_NEEDS, "allow")
    spec = json.dumps({"default": "errno", "rules": rules, "arg_eq": {ARG_COMPARED: 8}, "load": True})
    out = tmp_path / "loaded.bpf"
    child = subprocess.Popen([SYSTEM_PYTHON, "-c", BUILD, spec, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "loaded"
        yield child, out.read_bytes()
    finally:
        child.kill()
        child.wait()


def _state(pid: int) -> str:
    """The process's state, once it has settled: let go, it runs (R) for a moment back into its
    sleep (S); one left stopped stays in t (a tracing stop) or T, and is never R."""
    deadline = time.monotonic() + 5
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state != "R" or time.monotonic() > deadline:
            return state
        time.sleep(0.01)


def test_a_live_filter_is_read_with_ptrace_and_the_process_is_let_go(filtered_child):
    child, exported = filtered_child
    reading = seccomp.read(child.pid)
    assert reading.mode == "filter" and reading.filters == 1 and reading.reason is None
    assert reading.programs == (exported,)
    assert _state(child.pid) == "S"  # sleeping again, not left in a tracing stop (t) or stopped (T)
    assert seccomp.filter_programs(child.pid) == (exported,)  # a second reader finds it free
    found = by_class(seccomp.classes(reading))
    assert found[ALLOWED] == set(KNOWN + CHILD_NEEDS) and found[CONDITIONAL] == {ARG_COMPARED}
    assert _state(child.pid) == "S"


def test_a_process_someone_else_traces_is_not_read_and_says_by_whom(filtered_child):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (scripts/setup-host installs it)")
    child, _ = filtered_child
    tracer = subprocess.Popen(["strace", "-o", "/dev/null", "-p", str(child.pid)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while seccomp.hostproc.status_fields(child.pid).get("TracerPid", "0") == "0":
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.05)
        reading = seccomp.read(child.pid)
        assert reading.programs is None and reading.read is False and reading.tracer == tracer.pid
        assert f"already traced by PID {tracer.pid} (strace)" in (reading.reason or "")
        # where the tracer is one of the side's own processes (gVisor's Sentry), its role is named
        pids = {child.pid: "stub", tracer.pid: "sandbox"}
        found = seccomp.by_roles({pid: seccomp.read(pid) for pid in pids}, pids, {"stub"})
        assert f"(PID {tracer.pid} is this side's sandbox)" in found["by_role"]["stub"]["reason"]
    finally:
        tracer.terminate()
        tracer.wait()


FILTERED_READER = """
import ctypes, json, struct, sys
from explorer.probes import seccomp
# install an allow-everything filter on this reader itself: the kernel then refuses to show filters
libc = ctypes.CDLL(None, use_errno=True)
program = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(Prog(1, program)), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP, FILTER
reading = seccomp.read(int(sys.argv[1]))
print(json.dumps({"read": reading.read, "reason": reading.reason}))
"""


def test_a_reader_under_a_filter_of_its_own_is_refused_and_says_why(filtered_child):
    child, _ = filtered_child
    got = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FILTERED_READER), str(child.pid)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(got.stdout)
    assert found["read"] is False and "under no seccomp filter itself" in found["reason"]
    assert "explorer's own seccomp: filter" in found["reason"]
    assert _state(child.pid) == "S"


def test_the_load_phase_records_each_role_and_the_union_over_the_roles_that_reach_the_kernel(filtered_child):
    """A filtered workload beside an unfiltered helper (a shim, say): each role's figures, and
    the union over the workload's role only, each beside the calls it used."""
    child, _ = filtered_child
    shim = subprocess.Popen(["sleep", "60"])
    try:
        traced = {
            "available": True,
            "by_role": {
                "workload": {"distinct": 2, "syscalls": {"read": 5, "write": 5}},
                "shim": {"distinct": 1, "syscalls": {"wait4": 1}},
            },
        }
        got = trace.filters({child.pid: "workload", shim.pid: "shim"}, {"workload"}, traced)
    finally:
        shim.kill()
        shim.wait()
    total = len(seccomp_bpf.native_calls()[1])
    assert got["available"] and got["calls"] == total and got["arch"] == os.uname().machine
    workload = got["by_role"]["workload"]
    assert workload["mode"] == "filter" and workload["read"] and workload["used"] == 2
    assert (workload["allowed"], workload["conditional"], workload["total"]) == (len(KNOWN + CHILD_NEEDS), 1, total)
    assert got["by_role"]["shim"]["allowed"] == total and got["by_role"]["shim"]["mode"] == "disabled"
    reach = got["reach"]
    assert reach["roles"] == ["workload"] and reach["allowed"] == workload["allowed"] and reach["used"] == 2
    assert _state(child.pid) == "S"


def _role(mode: str, allowed: int | None, conditional: int = 0, read: bool = True, reason: str | None = None) -> dict:
    total = None if allowed is None else 368
    denied = None if allowed is None else total - allowed - conditional
    return {
        "mode": mode,
        "filters": 1,
        "processes": 1,
        "read": read,
        "reason": reason,
        "allowed": allowed,
        "conditional": None if allowed is None else conditional,
        "denied": denied,
        "total": total,
        "used": 10,
    }


def _surface_load(by_role: dict, reach_roles: list[str], reach: dict) -> dict:
    traced = {"available": True, "method": "perf", "ops": 100, "per_op": 2.0, "distinct": 10}
    traced |= {"syscalls": {"read": 100}, "by_role": {r: {"calls": 100, "distinct": 1, "per_op": 1.0} for r in by_role}}
    seccomp_doc = {"available": True, "method": "ptrace", "arch": "x86_64", "calls": 368, "by_role": by_role}
    return {"status": "ok", "traced": traced, "seccomp": {**seccomp_doc, "reach": {"roles": reach_roles, **reach}}}


def test_the_surface_table_shows_what_each_side_may_reach_against_what_it_used():
    """The output reads the roles and their union from the document: no side's name decides."""
    unread = "1 of 1 not read: already traced by PID 9 (runsc-sandbox): a process has one tracer at most"
    sandbox = _role("filter", 68, 5)
    stub = _role("filter", None, read=False, reason=unread)
    skipped = {"status": "skipped", "reason": "not measured in this test"}
    raw = {
        "load": {
            "settings": {"seconds_per_round": 1, "rounds": 1, "traced_round": True},
            "client": "c",
            "native": skipped,
        },
        "sides": {
            "a": {
                "title": "side A",
                "load": _surface_load(
                    {"shim": _role("disabled", 368), "workload": _role("filter", 301, 7)},
                    ["workload"],
                    _role("filter", 301, 7),
                ),
            },
            "b": {
                "title": "side B",
                "load": _surface_load(
                    {"sandbox": sandbox, "stub": stub},
                    ["sandbox", "stub"],
                    {**sandbox, "read": False, "reason": unread, "used": 23},
                ),
            },
        },
    }
    result = partial(raw)
    headers, rows = costs.surface_table(result)
    assert headers[-1] == "may reach\n/ used"
    by_side = {row[0]: row for row in rows}
    assert by_side["side A"][5] == "shim: no filter\nworkload: filter, 301 +7"
    assert by_side["side A"][6] == "301 +7\nused 10"
    assert by_side["side B"][5] == "sandbox: filter, 68 +5\nstub: filter, not read"
    assert by_side["side B"][6] == ">=68 +5\nused 23"
    notes = costs.surface_notes(result)
    assert any("(side A: workload; side B: sandbox, stub)" in note for note in notes)
    assert f"side B, stub: {unread}" in notes
    assert any("Anjali et al., VEE 2020" in note for note in notes)
