"""The nspawn side's pure logic: names and owners, cgroup placement, argv (no shell text
pasted from values), notify messages, load paths on loopback only, the kernel left out."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from explorer.engines import nspawn
from explorer.errors import BackendError
from explorer.guest.handles import NspawnMachine
from explorer.guest.nsenter import nsenter_argv
from explorer.images import systemroot
from explorer.model import Target
from explorer.sides import SIDES

HYBRID_SELF = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n0::/\n"
HYBRID_MOUNTS = (
    "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,xattr,name=systemd 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
)


def machine(tmp_path: Path) -> nspawn.NspawnMachine:
    name = nspawn.machine_name("abcd1234", 0, 4242)
    cgroups = [Path("/sys/fs/cgroup/systemd") / name, Path("/sys/fs/cgroup/unified") / name]
    return nspawn.NspawnMachine(name, tmp_path / f"{name}-x1y2", cgroups, netns=name)


def test_names_carry_run_index_and_owner():
    name = nspawn.machine_name("abcd1234", 3, 4242)
    assert name == "explorer-nspawn-abcd1234-3-4242"
    assert nspawn.run_of(name) == "abcd1234" and nspawn.owner_of(name) == "4242"
    assert nspawn.owner_of(f"{name}-k2_9x") == "4242"
    assert nspawn._strip_suffix(f"{name}-k2_9x") == name
    assert nspawn._strip_suffix(name) == name
    assert nspawn.owner_of("explorer-nspawn-odd") == ""


def test_cgroups_go_under_our_own_in_the_systemd_and_unified_hierarchies():
    parents = nspawn.cgroup_parents(HYBRID_SELF, HYBRID_MOUNTS)
    assert parents == [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]
    pure_v2 = nspawn.cgroup_parents("0::/user.slice/x.scope\n", "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    assert pure_v2 == [Path("/sys/fs/cgroup/user.slice/x.scope")]


def test_nspawn_boots_unregistered_in_explorers_netns(tmp_path):
    m = machine(tmp_path)
    argv = nspawn.nspawn_argv(m)
    assert {"--boot", "--register=no", "--keep-unit", "--notify-ready=yes"} <= set(argv)
    assert f"--network-namespace-path=/run/netns/{m.name}" in argv
    assert not any(a.startswith(("--network-veth", "--network-bridge", "--port", "--network-zone")) for a in argv)


def test_the_overlay_is_mounted_in_a_private_mount_namespace_values_as_arguments(tmp_path):
    m = machine(tmp_path)
    argv = nspawn.start_argv(m, Path("/cache/nspawn/k/root"))
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    script = argv[argv.index("-c") + 1]
    assert script == nspawn.OVERLAY_EXEC and "/cache" not in script  # fixed text, values after it
    assert argv[-5:-1] == ["/cache/nspawn/k/root", str(m.upper), str(m.workdir / "work"), str(m.merged)]
    assert argv[-1].split() == [
        f"/sys/fs/cgroup/systemd/{m.name}/cgroup.procs",
        f"/sys/fs/cgroup/unified/{m.name}/cgroup.procs",
    ]


@pytest.mark.parametrize("lower", ["/cache/a,b/root", "/cache/a:b/root", "relative/root"])
def test_a_path_overlayfs_cannot_carry_is_refused(tmp_path, lower):
    with pytest.raises(BackendError):
        nspawn.start_argv(machine(tmp_path), Path(lower))


def test_the_proxy_listens_on_the_hosts_loopback_and_connects_to_the_netns_loopback(tmp_path):
    m = machine(tmp_path)
    argv = nspawn.proxy_argv(m, 41234, 6379)
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:41234"
    assert argv[-2:] == [nspawn.PROXYD, "127.0.0.1:6379"]
    assert ["ip", "netns", "exec", m.name] == argv[-6:-2]


def test_load_paths_stay_on_loopback(tmp_path):
    m = machine(tmp_path)
    m.workload_port = 6379
    target = Target("nspawn", m.name, "abcd1234", 41234, handle=m)
    published, own = nspawn.NspawnEngine(SIDES["nspawn"]).load_paths(target)
    assert published.endpoint == "127.0.0.1:41234" and published.relay == "systemd-socket-proxyd"
    assert own.endpoint == "127.0.0.1:6379" and own.prefix == ("ip", "netns", "exec", m.name)
    assert own.missing  # no such netns here


def test_notify_messages_are_parsed():
    assert nspawn.parse_notify(b"STATUS=Container running.\nX_NSPAWN_LEADER_PID=15324") == {
        "STATUS": "Container running.",
        "X_NSPAWN_LEADER_PID": "15324",
    }
    assert nspawn.parse_notify(b"READY=1\n") == {"READY": "1"}


def test_the_view_enters_the_containers_namespaces_through_its_pid_1():
    argv = nsenter_argv(1929, ["/bin/sh", "-c", "true"])
    assert argv[:2] == ["nsenter", "--target=1929"] and "--pid" in argv and "--mount" in argv


def test_the_kernel_is_left_out_of_the_root_and_the_extraction_is_argv():
    for pattern in ("./boot/vmlinuz-*", "./boot/initrd.img-*", "./usr/lib/modules/*"):
        assert pattern in systemroot.KERNEL_FILES
    argv = systemroot.extract_argv(Path("/c/disk.raw"), Path("/c/mnt"), Path("/c/root"))
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert argv[argv.index("-c") + 1] == systemroot.EXTRACT
    assert "--exclude=./usr/lib/modules/*" in argv


def test_the_side_is_a_container_judged_by_its_figures():
    side = SIDES["nspawn"]
    assert side.kind == "container" and side.package == "systemd-container"
    assert "nspawn" not in (Path(nspawn.__file__).parents[1] / "claims" / "claims.yaml").read_text()


def test_procs_files_finds_every_cgroup_procs_and_those_of_one_unit(tmp_path):
    from explorer.engines.nspawn import procs_files

    for sub in ("", "payload", "payload/system.slice/explorer-workload.service", "payload/system.slice/cron.service"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / "cgroup.procs").write_text("1\n")
    assert len(procs_files(tmp_path)) == 4
    unit = procs_files(tmp_path, "/system.slice/explorer-workload.service")
    assert unit == [tmp_path / "payload/system.slice/explorer-workload.service/cgroup.procs"]
    assert procs_files(tmp_path / "gone") == []  # a cgroup removed meanwhile: nothing, no error


@pytest.mark.parametrize("layout", ["payload/system.slice", "system.slice", "payload/init.scope/system.slice"])
def test_the_units_processes_are_found_where_nspawn_puts_its_cgroup(tmp_path, layout):
    """nspawn's payload cgroup (systemd 252 here), the container's own at the top (older), or
    anywhere below where there is no payload cgroup: the unit's processes are found each way."""
    unit = "explorer-workload.service"
    top = tmp_path / "explorer-nspawn-1-0-2"
    (top / layout / unit).mkdir(parents=True)
    (top / layout / unit / "cgroup.procs").write_text("4242\n")
    if layout.startswith("payload/init.scope"):
        (top / "payload").rename(top / "elsewhere")
    machine = NspawnMachine("explorer-nspawn-1-0-2", tmp_path, [top])
    target = Target(side="nspawn", name=machine.name, run_id="1", host_port=0, handle=machine)
    target.facts["service"] = unit
    assert nspawn.NspawnEngine(SIDES["nspawn"])._unit_procs(target, machine) == [4242]
    (next(top.rglob("cgroup.procs"))).write_text("")
    assert nspawn.NspawnEngine(SIDES["nspawn"])._unit_procs(target, machine) == []


def test_knock_is_one_connection_accepted_or_refused():
    """What starts the socket proxy ahead of the first readiness attempt: a listener (as
    systemd-socket-activate's) takes the connection; a free port refuses it, to be tried again."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert nspawn.knock(port)
    assert not nspawn.knock(port)
