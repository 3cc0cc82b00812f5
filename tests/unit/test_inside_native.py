"""The inside probe run natively: as root (the host's reference) and as nobody, its facts checked
against what Python and psutil read independently, its classification against this host's own
settings (its kernel config, its sysctls); a hang ended at the probe's own timeout or, failing
that, at explorer's; a read-only root without /proc, /sys, /dev or /tmp; and what it prints
parsed and refused field by field."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from explorer.probes.inside import run as inside_run
from explorer.probes.inside import view
from explorer.result.inside import ProbeDocument
from tests.unit.inside_helpers import NOBODY, SETPRIV_NOBODY, needs_root, probe_binary


@pytest.fixture(scope="module")
def row():
    needs_root()
    return inside_run.native_row(probe_binary())


def _sysctl(path: str) -> int | None:
    try:
        return int(Path("/proc/sys", path).read_text().split()[0])
    except OSError:
        return None


def _kernel_config() -> dict[str, str] | None:
    try:
        lines = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode().splitlines()
    except OSError:
        return None
    return dict(line.split("=", 1) for line in lines if line.startswith("CONFIG_"))


def test_as_root_every_call_reaches_the_kernel_and_only_what_it_lacks_is_absent(row):
    """Natively as root nothing refuses: no filter, every capability explorer needs (this host's
    root lacks CAP_SYS_RESOURCE only, which no operation needs). What answers ENOSYS is what this
    kernel was built without (read from its own /proc/config.gz) or what Linux removed."""
    root = row.runs[0]
    assert root.failure is None and root.view is not None
    ops = {op.id: op for op in root.view.operations}
    assert root.view.outcomes["blocked"] == 0, [(o.id, o.reason) for o in ops.values() if o.outcome == "blocked"]
    assert root.view.outcomes["unclear"] == root.view.outcomes["skipped"] == 0
    metas = view.operations()
    assert {o.id for o in ops.values() if o.outcome == "succeeded"} == {i for i, m in metas.items() if m.may_succeed}
    config = _kernel_config()
    if config is None:
        pytest.skip("/proc/config.gz is not readable: the kernel's options cannot be checked")
    lacking = {i for i, m in metas.items() if m.removed or (m.config is not None and config.get(m.config) != "y")}
    assert {o.id for o in ops.values() if o.outcome == "absent"} == lacking


def test_as_nobody_what_needs_a_capability_is_refused_and_the_rest_answers_as_for_root(row):
    plain, root = row.runs[1], row.runs[0]
    assert plain.failure is None and plain.view is not None and root.view is not None
    assert (plain.view.user.uid, plain.view.user.gid, plain.view.user.groups) == (*NOBODY, [])
    mine = {op.id: op for op in plain.view.operations}
    roots = {op.id: op for op in root.view.operations}
    # each op's answer may depend on one of the host's switches: read them, not the probe
    userns_allowed = (_sysctl("user/max_user_namespaces") or 0) > 0 and _sysctl("kernel/unprivileged_userns_clone") != 0
    switched = {
        "unshare_user": "succeeded" if userns_allowed else "blocked",
        "bpf": "blocked" if _sysctl("kernel/unprivileged_bpf_disabled") else "reachable",
        "userfaultfd": "reachable" if _sysctl("vm/unprivileged_userfaultfd") else "blocked",
    }
    for op_id, meta in view.operations().items():
        op = mine[op_id]
        if roots[op_id].outcome == "absent":
            assert op.outcome == "absent", op_id
        elif op_id in switched:
            assert op.outcome == switched[op_id], (op_id, op.reason)
        elif meta.tells == "permission":  # the capability is checked before the harmless argument fails
            assert (op.outcome, op.errno_name) == ("blocked", "EPERM"), (op_id, op.reason)
        else:  # the harmless argument fails first, for anyone: root's answer exactly
            assert (op.outcome, op.errno_name) == (roots[op_id].outcome, roots[op_id].errno_name), op_id


def test_nobody_by_the_probe_s_own_drop_answers_as_nobody_started_by_setpriv():
    needs_root()
    binary = probe_binary()
    dropped = inside_run.run_native(binary, NOBODY)
    started = subprocess.run([*SETPRIV_NOBODY, str(binary)], capture_output=True, text=True, check=False, timeout=60)
    assert dropped.doc is not None and started.returncode == 0, started.stderr
    other = inside_run.parse(started.stdout)
    assert dropped.doc.user.requested is not None and other.user.requested is None
    assert [(o.id, o.errno_name, o.ret) for o in dropped.doc.operations or []] == [
        (o.id, o.errno_name, o.ret) for o in other.operations or []
    ]
    assert dropped.doc.facts is not None and other.facts is not None
    for name in ("kallsyms", "kernel_log", "proc_sys_writable", "capabilities", "namespaces"):
        assert getattr(dropped.doc.facts, name).value == getattr(other.facts, name).value, name


def test_a_drop_that_fails_is_reported_and_nothing_is_probed():
    needs_root()
    done = subprocess.run(
        [*SETPRIV_NOBODY, str(probe_binary()), "--uid", "0", "--gid", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == inside_run.DROP_FAILED
    doc = inside_run.parse(done.stdout)
    assert doc.user.assumed is False and doc.user.uid == NOBODY[0] and "setresgid(0)" in (doc.user.error or "")
    assert doc.facts is None and doc.operations is None
    result = inside_run.finished(["probe"], done.returncode, done.stdout, done.stderr, 0.1)
    assert result.doc is None and result.failure is not None and "could not become the user" in result.failure.error


def _volatile() -> dict[str, object]:
    """What other work on this host (containers, VMs) may change while the probe reads."""
    return {
        "interfaces": {name for _, name in socket.if_nameindex()},
        "processes": len(psutil.pids()),
        "mounts": len(Path("/proc/self/mountinfo").read_text().splitlines()),
        "devices": {e.name for e in os.scandir("/dev") if stat.S_ISBLK(os.lstat(e.path).st_mode)},
    }


def _between(value, before, after) -> bool:
    """A reading taken between two others: a count between them, a set holding what both held and
    nothing neither held."""
    if isinstance(value, set):
        return before & after <= value <= before | after
    return min(before, after) <= value <= max(before, after)


def test_the_root_run_s_facts_are_what_python_reads_itself():
    needs_root()
    before = _volatile()
    got = inside_run.host_reference(probe_binary())
    after = _volatile()
    assert got.doc is not None and got.doc.facts is not None
    facts = got.doc.facts
    uname = os.uname()
    assert (facts.kernel_release.value, facts.hostname.value, facts.machine.value) == (
        uname.release,
        uname.nodename,
        uname.machine,
    )
    assert facts.boot_id.value == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert facts.mem_total_bytes.value == psutil.virtual_memory().total
    assert facts.cpus_affinity.value == len(os.sched_getaffinity(0))
    assert facts.cpus_online_list.value == Path("/sys/devices/system/cpu/online").read_text().strip()
    assert facts.pid1_comm.value == Path("/proc/1/comm").read_text().strip()
    assert abs((facts.uptime_s.value or 0) - float(Path("/proc/uptime").read_text().split()[0])) < 30
    assert {i.name for i in facts.net_interfaces.value or [] if i.loopback} == {"lo"}
    assert facts.mounts.value is not None
    probed = {
        "interfaces": {i.name for i in facts.net_interfaces.value or []},
        "processes": facts.processes_visible.value,
        "mounts": facts.mounts.value.count,
        "devices": {d.name for d in facts.block_devices.value or []},
    }
    for name, value in probed.items():
        if name == "processes":  # the test's own children come and go: a few either way
            low, high = sorted((before[name], after[name]))
            assert low - 10 <= value <= high + 10, (value, low, high)
        else:
            assert _between(value, before[name], after[name]), (name, value, before[name], after[name])
    status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\t" in line)
    assert facts.capabilities.value is not None
    assert int(facts.capabilities.value.effective, 16) == int(status["CapEff"], 16)
    assert facts.seccomp.value is not None and facts.seccomp.value.mode == int(status["Seccomp"])
    assert facts.namespaces.value == {k: os.readlink(f"/proc/self/ns/{k}") for k in facts.namespaces.value}
    limit = facts.memory_limit
    assert limit.source is not None and Path(limit.source).read_text().strip() == limit.value


def test_the_root_run_is_the_host_and_nobody_differs_only_where_rights_differ(row):
    root, plain = (run.view.facts for run in row.runs)
    assert root is not None and plain is not None
    assert all(getattr(root, name).same_as_host for name in type(root).model_fields)  # itself, read once
    # mounts, interfaces, devices and processes may change between the two runs (other work on the
    # host): they are checked against Python's own readings above
    volatile = {"mounts", "net_interfaces", "block_devices", "processes_visible"}
    differ = {name for name in type(plain).model_fields if getattr(plain, name).same_as_host is False} - volatile
    # nobody has no capability; this host's /proc/sys files and /sys are root's to write; the
    # kernel log is root's where dmesg_restrict is set; kallsyms shows addresses per kptr_restrict
    assert {"capabilities", "proc_sys_writable", "sys_writable"} <= differ
    assert differ <= {"capabilities", "proc_sys_writable", "sys_writable", "kernel_log", "kallsyms"}
    assert ("kernel_log" in differ) == bool(_sysctl("kernel/dmesg_restrict"))


# ---------------------------------------------------------------- deadlines


def test_a_hang_ends_at_the_probe_s_own_timeout_and_says_so():
    binary = probe_binary()
    start = time.monotonic()
    got = inside_run.run_native(binary, timeout_s=1, extra=("--sleep-for-test", "30"))
    assert time.monotonic() - start < 5
    assert got.doc is None and got.failure is not None
    assert got.failure.timed_out and got.failure.exit_code == inside_run.TIMED_OUT
    assert "--timeout reached while sleeping (--sleep-for-test)" in got.failure.error


def test_a_probe_that_outlives_its_own_timeout_is_ended_by_explorer(monkeypatch):
    """--timeout 0 after explorer's own --timeout switches the probe's alarm off: only explorer's
    deadline is left, and it ends the probe (nothing of it is left running)."""
    binary = probe_binary()
    monkeypatch.setattr(inside_run, "GRACE_S", 1.0)
    start = time.monotonic()
    got = inside_run.run_native(binary, timeout_s=1, extra=("--timeout", "0", "--sleep-for-test", "30"))
    assert 1.5 < time.monotonic() - start < 10
    assert got.failure is not None and got.failure.timed_out and got.failure.exit_code is None
    assert "ended by explorer" in got.failure.error
    left = [p for p in psutil.process_iter(["exe"]) if p.info["exe"] == str(binary)]
    assert left == []


# ---------------------------------------------------------------- a bare, read-only root


def test_it_probes_from_a_read_only_root_with_no_proc_sys_dev_or_tmp(tmp_path):
    """In a private mount namespace (unshare(1), the host's mounts untouched), a read-only bind of
    a directory holding only the probe becomes its root: no /proc, /sys, /dev or /tmp."""
    needs_root()
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's unshare is not installed")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy2(probe_binary(), root / "explorer-inside")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec chroot "$1" /explorer-inside'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = inside_run.parse(done.stdout)
    assert doc.facts is not None and doc.operations is not None
    assert doc.facts.boot_id.value is None and "ENOENT" in (doc.facts.boot_id.error or "")
    assert doc.facts.mounts.value is None and doc.facts.kernel_release.value == os.uname().release
    skipped = {op.id for op in doc.operations if op.skipped}
    assert skipped == {"setns_net", "open_by_handle_at"}  # both open something under /proc
    assert sorted(p.name for p in root.iterdir()) == ["explorer-inside"]  # it wrote nothing


# ---------------------------------------------------------------- parsing


@pytest.fixture(scope="module")
def printed() -> dict:
    done = subprocess.run([str(probe_binary())], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0
    return json.loads(done.stdout)


def _refusal(doc: object) -> str:
    with pytest.raises(inside_run.InsideProbeError) as caught:
        inside_run.parse(doc if isinstance(doc, str) else json.dumps(doc))
    return str(caught.value)


def test_what_the_probe_prints_parses_into_its_model(printed):
    doc = inside_run.parse(json.dumps(printed))
    assert isinstance(doc, ProbeDocument) and len(doc.operations or []) == len(printed["operations"])


def test_a_document_that_does_not_fit_is_refused_naming_the_field(printed):
    bad = json.loads(json.dumps(printed))
    bad["facts"]["mem_total_bytes"]["value"] = "24 GiB"
    assert "facts.mem_total_bytes.value: Input should be a valid integer" in _refusal(bad)
    bad = json.loads(json.dumps(printed))
    bad["operations"][0]["errno"] = 1.5
    assert "operations.0.errno" in _refusal(bad)
    bad = json.loads(json.dumps(printed))
    bad["facts"]["unknown_fact"] = {"method": "m", "value": 1}
    assert "facts.unknown_fact: Extra inputs are not permitted" in _refusal(bad)
    bad = json.loads(json.dumps(printed))
    del bad["user"]
    assert "user: Field required" in _refusal(bad)
    bad = json.loads(json.dumps(printed))
    bad["user"]["assumed"] = False
    assert "facts and operations are present exactly when the user was assumed" in _refusal(bad)
    bad = json.loads(json.dumps(printed))
    bad["probe"] = "explorer-inside/0"
    assert "probe:" in _refusal(bad)


def test_anything_but_one_document_is_refused(printed):
    assert "Invalid JSON" in _refusal("")
    assert "Invalid JSON" in _refusal(json.dumps(printed) + json.dumps(printed))
    assert "Invalid JSON" in _refusal("explorer-inside: --timeout reached\n")


# ---------------------------------------------------------------- comparing with the host


def _with(printed: dict, **facts: dict) -> ProbeDocument:
    changed = json.loads(json.dumps(printed))
    for name, fields in facts.items():
        changed["facts"][name].update(fields)
    return inside_run.parse(json.dumps(changed))


def _same(doc: ProbeDocument, host: ProbeDocument, name: str, gap_s: float = 0.0) -> bool | None:
    facts = view.view(doc, host, gap_s=gap_s).facts
    assert facts is not None
    return getattr(facts, name).same_as_host


def test_the_comparison_rules(printed):
    host = inside_run.parse(json.dumps(printed))
    later = _with(printed, uptime_s={"value": printed["facts"]["uptime_s"]["value"] + 4.0})
    assert _same(later, host, "uptime_s") is False and _same(later, host, "uptime_s", gap_s=2.0) is True
    total = printed["facts"]["mem_total_bytes"]["value"]
    assert _same(_with(printed, mem_total_bytes={"value": int(total * 0.995)}), host, "mem_total_bytes") is True
    assert _same(_with(printed, mem_total_bytes={"value": int(total * 0.98)}), host, "mem_total_bytes") is False
    # gVisor has no boot_id: absent is a value, and not the host's; another kernel's namespaces are not compared
    gvisor = view.view(_with(printed, boot_id={"value": None, "error": "ENOENT (2): No such file or directory"}), host)
    assert gvisor.facts is not None and gvisor.facts.boot_id.same_as_host is False
    assert gvisor.facts.namespaces.same_as_host is None and "another kernel" in (gvisor.facts.namespaces.why or "")
    unlimited = _with(printed, memory_limit={"value": "max"}, cpu_limit={"value": "max 100000"})
    v1_unlimited = _with(printed, memory_limit={"value": "9223372036854771712"}, cpu_limit={"value": "-1 100000"})
    assert (
        _same(unlimited, v1_unlimited, "memory_limit") is True and _same(unlimited, v1_unlimited, "cpu_limit") is True
    )
    assert _same(_with(printed, memory_limit={"value": "536870912"}), v1_unlimited, "memory_limit") is False


@pytest.mark.parametrize(
    ("raw", "limit"),
    [("max", None), ("-1 100000", None), ("max 100000", None), ("50000 100000", 0.5), ("536870912", 536870912.0),
     ("9223372036854771712", None)],
)  # fmt: skip
def test_cgroup_limits_as_the_probe_reports_them(raw, limit):
    assert view.limit_of(raw) == limit
