"""The inside probe's operations: the program's list and operations.yaml agree; the program never
makes a forbidden call and makes each listed one only with the harmless arguments it promises
(read off a real run under strace, not off its own words); a libseccomp filter's refusals are
classified as blocked with the filter's errno; the classification table itself."""

from __future__ import annotations

import errno
import json
import re
import shutil
import signal
import subprocess
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from explorer.probes.inside import run as inside_run
from explorer.probes.inside import view
from explorer.result.inside import RawOperation
from tests.unit.inside_helpers import needs_root, probe_binary

NX = "/nonexistent-explorer/"
# never called, whatever the arguments (they are judged from the seccomp evaluation instead, or
# would change the host for real); nor anything that writes, creates, removes or signals
FORBIDDEN = {
    "reboot", "settimeofday", "sethostname", "setdomainname", "acct", "stime", "adjtimex", "clock_adjtime",
    "kill", "tkill", "tgkill", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "rmdir", "link", "linkat", "symlink", "symlinkat", "truncate", "ftruncate", "chmod", "fchmod", "fchmodat",
    "chown", "fchown", "fchownat", "lchown", "creat", "sync", "syncfs", "setxattr", "lsetxattr", "fsetxattr",
    "sysctl", "_sysctl", "personality", "vhangup", "nfsservctl", "create_module", "uselib", "fsconfig",
    "mount_setattr", "request_key", "seccomp", "quotactl_fd", "pidfd_open", "pidfd_send_signal",
}  # fmt: skip
# The arguments each listed call is promised to carry, as strace 6.1 prints them (its /* ... */
# comments removed). The op ids are the program's; a call name may serve two ops (syslog: the fact
# reads the log's size; the op asks to set the console level).
PROMISED: dict[str, list[str]] = {
    "mount": [r'NULL, "/", NULL, MS_MOVE, NULL'],
    "umount2": [r'"/proc/self/fd", 0'],
    "pivot_root": [rf'"{NX}new", "{NX}old"'],
    "chroot": [r'"/"'],
    "fsopen": [r'"tmpfs", 0x80000000'],
    "fsmount": [r"-1, 0x80000000, 0"],
    "fspick": [rf'AT_FDCWD, "{NX}x", 0x80000000'],
    "open_tree": [rf'AT_FDCWD, "{NX}x", OPEN_TREE_CLONE'],
    "move_mount": [rf'-1, "{NX}from", -1, "{NX}to", 0x80000000'],
    "unshare": [r"CLONE_NEWUSER", r"CLONE_NEWNS", r"CLONE_NEWNET"],
    "setns": [r"\d+, CLONE_NEWNET"],
    "clone3": [r"NULL, 0"],
    "open_by_handle_at": [r'\d+, \{handle_bytes=8, handle_type=1, f_handle="(\\x00){8}"\}, O_RDONLY'],
    "name_to_handle_at": [rf'AT_FDCWD, "{NX}x", NULL, NULL, 0'],
    "init_module": [r'NULL, 0, ""'],
    "finit_module": [r'-1, "", 0'],
    "delete_module": [r"NULL, 0"],
    "kexec_load": [r"NULL, 17, NULL, KEXEC_ARCH_DEFAULT\|0x8000"],
    "kexec_file_load": [r"-1, -1, 0, NULL, 0x8000"],
    "bpf": [r"BPF_PROG_LOAD, \{prog_type=BPF_PROG_TYPE_UNSPEC, insn_cnt=0, insns=NULL, .*\}, \d+"],
    "perf_event_open": [r"NULL, 0, -1, -1, 0"],
    "userfaultfd": [r"0x40000000"],
    "io_uring_setup": [r"0, NULL"],
    "keyctl": [r"0x270f, 0, 0, 0, 0"],
    "add_key": [r"NULL, NULL, NULL, 0, 0"],
    "ptrace": [r"PTRACE_ATTACH, -1"],
    "process_vm_readv": [r"-1, NULL, 0, NULL, 0, 1"],
    "mknodat": [rf'AT_FDCWD, "{NX}blk", S_IFBLK\|0600, makedev\(0x7, 0\)'],
    "swapon": [rf'"{NX}swap", 0'],
    "swapoff": [rf'"{NX}swap"'],
    "syslog": [r"8, NULL, 0", r"10"],
    "quotactl": [rf'QCMD\(Q_GETQUOTA, USRQUOTA\), "{NX}dev", 0, NULL'],
    "iopl": [r"4"],
    "ioperm": [r"0, 0, 1"],
    "clock_settime": [r"0x64, NULL"],
    "lookup_dcookie": [r"0, NULL, 0"],
    "fanotify_init": [r"FAN_CLASS_NOTIF\|0x80000000, O_RDONLY"],
}
IN_A_CHILD_ONLY = {"unshare", "setns", "chroot"}  # they change the caller: never the probe itself


def _document(*args: str) -> dict:
    done = subprocess.run([str(probe_binary()), *args], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_program_s_operations_are_the_yaml_s_and_each_says_why_and_how_it_is_harmless():
    doc = _document()
    program = [op["id"] for op in doc["operations"]]
    listed = list(view.operations())
    assert len(program) == len(set(program)) >= 25
    assert set(program) == set(listed)
    for op in doc["operations"]:
        assert op["harmless"].strip() and op["call"].strip() and op["syscalls"], op["id"]
        assert not FORBIDDEN & set(op["syscalls"]), op["id"]
    for op_id, meta in view.operations().items():
        assert len(meta.why) > 40 and meta.checks.strip(), op_id
        assert meta.references and all(r.startswith("https://") for r in meta.references), op_id
    # every call the program lists is one this test knows the harmless form of
    assert {name for op in doc["operations"] for name in op["syscalls"]} - {"openat"} <= set(PROMISED)


# ---------------------------------------------------------------- the program's calls, traced

LINE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+= (?P<ret>-?\d+|\?)(?: (?P<errno>E[A-Z0-9]+))?")


def _traced(tmp_path: Path, *args: str) -> tuple[dict, int, dict[int, list[tuple[str, str, str | None]]]]:
    """The probe run under strace -ff: its document, its PID, and each process's calls
    (name, arguments without strace's comments, errno name)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (scripts/setup-host installs it)")
    prefix = tmp_path / "trace"
    argv = ["strace", "-ff", "-qq", "-s", "256", "-o", str(prefix), str(probe_binary()), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    calls: dict[int, list[tuple[str, str, str | None]]] = {}
    for path in tmp_path.glob("trace.*"):
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            found = LINE.match(line)
            if found:
                plain = re.sub(r"\s*/\*.*?\*/", "", found["args"])
                entries.append((found["name"], plain, found["errno"]))
        calls[int(path.suffix[1:])] = entries
    return doc, doc["pid"], calls


@pytest.mark.parametrize("as_nobody", [False, True], ids=["root", "nobody"])
def test_under_strace_no_forbidden_call_and_every_listed_call_is_made_only_harmlessly(tmp_path, as_nobody):
    needs_root()
    doc, main_pid, calls = _traced(tmp_path, *(["--uid", "65534", "--gid", "65534"] if as_nobody else []))
    assert main_pid in calls and len(calls) > len(doc["operations"])  # one child per operation
    made = {name for entries in calls.values() for name, _, _ in entries}
    assert made & FORBIDDEN == set()
    seen: dict[str, list[str | None]] = defaultdict(list)
    for pid, entries in calls.items():
        for name, args, err in entries:
            if name == "openat":
                assert not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND", args), args  # it writes nothing
            if name == "write" and pid == main_pid:
                assert args.startswith("1, "), args  # the document, on stdout; a child writes to its pipe
            if name not in PROMISED:
                continue
            assert any(re.fullmatch(p, args) for p in PROMISED[name]), f"{name}({args}) is not a promised form"
            if name in IN_A_CHILD_ONLY:
                assert pid != main_pid, f"{name} was called by the probe itself"
            seen[name].append(err)
    for op in doc["operations"]:  # each op was made, and strace saw the answer the probe reports
        if op["skipped"]:
            continue
        name = next(n for n in op["syscalls"] if n != "openat")
        assert name in seen, op["id"]
        assert op["errno_name"] in seen[name], (op["id"], op["errno_name"], seen[name])


# ---------------------------------------------------------------- under a libseccomp filter

SYSTEM_PYTHON = "/usr/bin/python3"
FILTERED = textwrap.dedent(
    """
    import errno, json, os, sys, seccomp
    spec = json.loads(sys.argv[1])
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name, err in spec["errno"].items():
        f.add_rule(seccomp.ERRNO(getattr(errno, err)), name)
    for name in spec["kill"]:
        f.add_rule(seccomp.KILL_PROCESS, name)
    f.load()
    os.execv(sys.argv[2], sys.argv[2:])
    """
)
# op id -> the errno the filter answers with; KILLED: the filter kills the process making the call
DENIED = {
    "mount": "EPERM",
    "keyctl": "EPERM",
    "perf_event_open": "EPERM",
    "bpf": "EACCES",
    "io_uring_setup": "ENOSYS",  # the host's kernel has it: a filter's ENOSYS is "blocked"
    "clone3": "ENOSYS",
    "init_module": "ENOSYS",  # the host's kernel has no modules: the filter's ENOSYS looks the same
}
KILLED = {"swapoff"}


def _no_binding() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True, check=False)
    return done.returncode and "python3-seccomp is not installed (scripts/setup-host installs it)" or None


def test_a_filter_s_refusals_are_classified_blocked_with_its_errno_and_the_rest_as_the_host_answers():
    needs_root()
    if reason := _no_binding():
        pytest.skip(reason)
    binary = probe_binary()
    spec = {"errno": {op: err for op, err in DENIED.items()}, "kill": sorted(KILLED)}
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", FILTERED, json.dumps(spec), str(binary)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    filtered = inside_run.parse(done.stdout)
    host = inside_run.run_native(binary)
    assert host.doc is not None
    got = {op.id: op for op in view.view(filtered, host.doc, "host").operations}
    plain = {op.id: op for op in view.view(host.doc, host.doc, "host").operations}
    for op_id, err in DENIED.items():
        assert got[op_id].errno == getattr(errno, err) and got[op_id].errno_name == err
        expected = "absent" if plain[op_id].outcome == "absent" else "blocked"
        assert got[op_id].outcome == expected, (op_id, got[op_id].reason)
    assert "a filter answering ENOSYS" in got["io_uring_setup"].reason
    assert got["swapoff"].signal == signal.SIGSYS and got["swapoff"].outcome == "blocked"
    assert "seccomp filter" in got["swapoff"].reason
    for op_id in set(got) - set(DENIED) - KILLED:
        assert (got[op_id].outcome, got[op_id].errno_name) == (plain[op_id].outcome, plain[op_id].errno_name), op_id
    seccomp = filtered.facts.seccomp.value if filtered.facts else None
    assert seccomp is not None and seccomp.mode == 2 and seccomp.filters == 1


# ---------------------------------------------------------------- the classification table


def _op(op_id: str, errno_name: str | None = None, ret: int = -1, sig: int | None = None, skipped: str | None = None):
    number = getattr(errno, errno_name) if errno_name else None
    made = skipped is None and sig is None
    return RawOperation(
        id=op_id,
        syscalls=["x"],
        call="x()",
        harmless="h",
        ret=ret if made else None,
        errno=number if made and ret < 0 else None,
        errno_name=errno_name if made and ret < 0 else None,
        signal=sig,
        skipped=skipped,
    )


@pytest.mark.parametrize(
    ("op", "host", "outcome", "says"),
    [
        (_op("mount", "EPERM"), None, "blocked", "a missing capability"),
        (_op("mount", "EACCES"), None, "blocked", "EACCES"),
        (_op("mknod_block", "EPERM"), None, "blocked", "before any argument was checked"),
        (_op("mount", "EINVAL"), None, "reachable", "after its permission check"),
        (_op("mknod_block", "ENOENT"), None, "reachable", "says nothing of a capability"),
        (_op("io_uring_setup", "ENOSYS"), _op("io_uring_setup", "EFAULT"), "blocked", "host's kernel has the call"),
        (_op("init_module", "ENOSYS"), _op("init_module", "ENOSYS"), "absent", "no such call"),
        (_op("init_module", "ENOSYS"), None, "absent", "no such call"),
        (_op("unshare_user", "ENOSPC"), None, "blocked", "ENOSPC"),
        (_op("unshare_user", "EINVAL"), None, "absent", "EINVAL"),
        (_op("unshare_user", ret=0), None, "succeeded", "in a child"),
        (_op("mount", ret=0), None, "succeeded", "UNEXPECTED"),
        (_op("mount", sig=signal.SIGSYS), None, "blocked", "SIGSYS"),
        (_op("mount", sig=signal.SIGSEGV), None, "unclear", "SIGSEGV"),
        (_op("setns_net", skipped="no /proc"), None, "skipped", "no /proc"),
    ],
)
def test_the_classification(op, host, outcome, says):
    got, reason = view.classify(op, host)
    assert got == outcome and says in reason
