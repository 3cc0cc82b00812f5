"""Docker's default seccomp profile as the runc workload runs it, read with ptrace and evaluated,
checked against what the kernel does: a call the evaluation calls denied fails with EPERM
inside the container and not on the host, one it calls allowed succeeds in both."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from explorer import lifecycle, readiness
from explorer.probes import seccomp, seccomp_bpf
from explorer.probes.seccomp_bpf import ALLOWED, CONDITIONAL, DENIED
from tests.conftest import backend_or_skip, ps_e, running_container

pytestmark = pytest.mark.docker

# perl (perl-base, Essential in Debian, so in every image mmdebstrap builds) makes a raw call
# by number and prints its result and errno; its arguments made numbers (a string would be
# passed as a pointer to it), the number apart (syscall's first argument is a scalar).
RAW_CALL = 'my ($n, @a) = map { $_ + 0 } @ARGV; my $r = syscall($n, @a); print $r, " ", ($r == -1 ? $! + 0 : 0), "\\n"'
EPERM = 1
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3


@pytest.fixture
def running_redis(docker_backend, redis_scenario, redis_artifact):
    yield from running_container(docker_backend, redis_scenario, redis_artifact)


def _init_pid(name: str) -> int:
    """The container's first process, as `docker inspect` names it (not explorer's own listing)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def _raw(argv_prefix: list[str], nr: int, *args: int) -> tuple[int, int]:
    """(return value, errno) of one system call made by perl under `argv_prefix`."""
    argv = [*argv_prefix, "perl", "-e", RAW_CALL, str(nr), *map(str, args)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return int(out[0]), int(out[1])


def test_the_runc_workload_runs_under_dockers_default_profile(running_redis):
    pid = _init_pid(running_redis.name)
    reading = seccomp.read(pid)
    assert reading.mode == "filter" and reading.reason is None, reading.reason
    assert reading.programs is not None and len(reading.programs) == reading.filters
    found = seccomp.classes(reading)
    assert found is not None
    counts = Counter(found.values())
    print(
        f"Docker's default profile (runc workload PID {pid}): {counts[ALLOWED]} allowed, {counts[CONDITIONAL]} "
        f"conditional, {counts[DENIED]} denied of {len(found)} {seccomp_bpf.arch_name()} calls; "
        f"conditional: {sorted(n for n, c in found.items() if c == CONDITIONAL)}"
    )
    assert 250 <= counts[ALLOWED] <= 340
    assert {found[n] for n in ("read", "write", "epoll_wait", "accept4", "futex")} == {ALLOWED}
    assert {found[n] for n in ("keyctl", "add_key", "kexec_load", "init_module", "mount")} == {DENIED}
    assert found["personality"] == CONDITIONAL  # allowed for a few personas only
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state != "t" and state != "T", "the workload was left stopped"


def test_the_evaluation_agrees_with_the_kernel_inside_the_container(running_redis):
    pid = _init_pid(running_redis.name)
    found = seccomp.classes(seccomp.read(pid))
    assert found is not None
    number = {name: nr for nr, name in seccomp_bpf.native_calls()[1].items()}
    inside = ["docker", "exec", running_redis.name]
    keyctl = (number["keyctl"], KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
    assert found["keyctl"] == DENIED
    assert _raw(inside, *keyctl) == (-1, EPERM)
    assert _raw([], *keyctl)[0] != -1  # the host, unfiltered: the same call is served
    assert found["getpid"] == ALLOWED and _raw(inside, number["getpid"])[0] > 0
    query, no_randomize = 0xFFFFFFFF, 0x0040000  # personality: a query is let through, ADDR_NO_RANDOMIZE is not
    assert _raw(inside, number["personality"], query)[0] != -1
    assert _raw(inside, number["personality"], no_randomize) == (-1, EPERM)


def test_gvisors_sentry_is_allowed_far_fewer_calls_and_its_stubs_are_not_read(redis_scenario, redis_artifact):
    """The Sentry (runsc-sandbox, found by `ps`, not by explorer's listing) runs under a filter of
    its own far narrower than Docker's default; the stubs it traces cannot be read by anyone else."""
    backend = backend_or_skip("gvisor")
    run_id = lifecycle.new_run_id()
    target = backend.create(redis_scenario, backend.prepare(redis_scenario), run_id, 0)
    try:
        readiness.wait_ready("redis", "127.0.0.1", target.host_port, time.monotonic() + 60)
        ident = target.facts["container_id"]
        sandboxes = [pid for pid, args in ps_e("args").items() if args.startswith("runsc-sandbox") and ident in args]
        assert len(sandboxes) == 1, sandboxes
        found = seccomp.classes(seccomp.read(sandboxes[0]))
        assert found is not None
        counts = Counter(found.values())
        print(f"gVisor's Sentry: {counts[ALLOWED]} allowed, {counts[CONDITIONAL]} conditional, {counts[DENIED]} denied")
        assert counts[ALLOWED] + counts[CONDITIONAL] < 150
        stubs = [pid for pid, role in backend.runtime_pids(target).items() if role == "stub"]
        for stub in stubs:
            reading = seccomp.read(stub)
            assert reading.read is False and reading.tracer == sandboxes[0], reading
    finally:
        backend.destroy(target)
        backend.clean(run_id)
