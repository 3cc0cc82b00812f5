"""The full-OS VM sides (fullvm under libvirt, the same VM through Vagrant) against
independent tools: `ps -e` polled while they run, `virsh net-list`, `vagrant global-status`.
Each boot takes ~30-70 s under TCG: one CLI run of both sides for the whole module. `virsh
dominfo`, `vagrant ssh` and the client inside the guest are checked in the side contract's boot
of each (tests/integration/test_side_contract.py), not in boots of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import backend_or_skip, run_explorer_traced
from tests.integration.conftest import networks, vagrant_machines, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.vagrant, pytest.mark.slow]
HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.fixture(scope="module")
def cli_run(vm_run):
    """The session's one run of the VM sides (tests/integration/conftest.py): its full-OS sides
    are this module's; their readiness there is `tcp`, which changes none of what is read here."""
    return vm_run


def test_the_host_never_lists_the_workload_only_the_vmm(cli_run):
    assert "redis-server" not in cli_run["comms"]
    assert any(comm.startswith("qemu-system-x86") for comm in cli_run["comms"])  # comm: 15 characters
    for name in ("fullvm", "vagrant"):
        side = cli_run["doc"]["sides"][name]
        assert side["kind"] == "vm"
        assert side["visibility"]["visible_on_host"] is False
        assert [p["name"] for p in side["visibility"]["runtime_processes"]] == ["qemu-system-x86_64"]
        assert side["kernel"]["shared"] is False and side["kernel"]["guest_boot_id"] != HOST_BOOT_ID


def test_the_guest_runs_a_full_os(cli_run):
    for name in ("fullvm", "vagrant"):
        inside = cli_run["doc"]["sides"][name]["visibility"]["inside"]
        processes = {p["pid"]: p["name"] for p in inside["processes"]}
        assert processes.get(1) == "systemd", processes
        user = {p["name"] for p in inside["processes"] if not p["kernel_thread"]}
        assert {"systemd-journal", "sshd", "redis-server"} <= user, user
        assert inside["os_process_count"] >= 5 and inside["kernel_thread_count"] >= 20


def test_explorers_own_ssh_session_is_set_apart_from_the_os_processes(cli_run):
    """`vagrant ssh` takes the Vagrant side's view: its sshd session processes (and any other
    session still closing) are explorer's or Vagrant's,
    reported apart; the listening sshd (PID 1's child) stays among the guest OS's."""
    inside = cli_run["doc"]["sides"]["vagrant"]["visibility"]["inside"]
    listed = {p["pid"]: p for p in inside["processes"]}
    mine = inside["explorer_processes_inside"]
    assert len(mine) >= 2 and set(mine) == {"sshd"}, mine  # the viewing session: [priv] and user
    assert not set(inside["explorer_pids_inside"]) & set(listed)
    sshd = [p for p in listed.values() if p["name"] == "sshd"]
    assert [p["ppid"] for p in sshd] == [1], sshd  # the listener only
    assert {"name": "sshd", "count": 1} in inside["os_processes"]


def test_claims_per_vm_side_name_the_os_processes_and_the_larger_image(cli_run):
    claims = {c["id"]: c for c in cli_run["doc"]["claims"]}
    fullvm = claims["os-processes"]["sides"]["fullvm"]
    assert fullvm["verdict"] == "reproduced" and "systemd" in fullvm["evidence"]
    image = cli_run["doc"]["sides"]["fullvm"]["image"]
    assert image["total_bytes"] == image["vm_image_bytes"] > 200 * 2**20
    startup = cli_run["doc"]["sides"]["fullvm"]["startup"]["summary"]
    assert {"kernel_s", "agent_s", "ssh_s", "ready_s"} <= set(startup)
    analyze = cli_run["doc"]["sides"]["fullvm"]["target"]["systemd_analyze"]
    assert analyze["available"] and analyze["userspace_s"] > 0


def test_nothing_is_left_and_no_network_was_made(cli_run):
    assert networks() == cli_run["nets"]
    assert vagrant_machines() == cli_run["machines"]
    run_id = cli_run["doc"]["run_id"]
    assert run_id not in virsh("list", "--all", "--name")
    assert not [p for p in Path("/tmp").glob(f"explorer-vagrant-{run_id}-*")]


def test_a_vagrant_readiness_timeout_exits_4_with_the_readiness_message():
    """The Vagrant side composes the full-OS parts: its readiness timeout is the usual one (exit
    4, what was waited for), not a traceback from a part it does not have."""
    backend_or_skip("vagrant")
    proc, pid = run_explorer_traced("run", "redis", "--sides", "vagrant", "--repeat", "1", "--ready-timeout", "5")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr
    assert "did not answer a redis readiness check" in proc.stderr
    assert not [n for n in virsh("list", "--all", "--name").split() if f"-{pid}-" in n]
    assert not [p for p in Path("/tmp").glob("explorer-vagrant-*") if p.name.split("-")[4] == str(pid)]


def test_the_inside_probe_runs_through_the_guest_agent_and_the_guests_kernel_answers(cli_run):
    """Issue 31 on the full-OS sides: the probe uploaded by the guest agent (virsh's
    guest-file-write, never a host mount), run as the workload's user and as root inside; the
    guest's kernel answers, the guest's MemTotal is at most the configured memory."""
    for name in ("fullvm", "vagrant"):
        side = cli_run["doc"]["sides"][name]
        inside = side["inside"]
        assert inside["available"], f"{name}: {inside['reason']}"
        assert "guest agent" in inside["delivery"], inside["delivery"]
        assert inside["summary"]["answered_by"] == "the guest's own kernel" and not inside["summary"]["host_kernel"]
        assert inside["summary"]["same_boot_id"] is False and inside["summary"]["operations"] >= 25
        users = [run["view"]["user"] for run in inside["runs"]]
        assert users[0]["uid"] != 0 and users[1]["uid"] == 0, users  # redis's own user, then root
        configured = side["memory"]["configured_bytes"]
        for run in inside["runs"]:
            assert 0 < run["view"]["facts"]["mem_total_bytes"]["value"] <= configured
    judged = next(c for c in cli_run["doc"]["claims"] if c["id"] == "isolation")["sides"]
    assert {n: judged[n]["verdict"] for n in ("fullvm", "vagrant")} == {"fullvm": "reproduced", "vagrant": "reproduced"}
