"""Podman's network plumbing as explorer reads it, from text the kernel and CNI write: no Podman."""

from __future__ import annotations

import base64
import json

import pytest

from explorer.engines import podman_net
from explorer.errors import BackendError

ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
# a namespace mounted while /run/netns was no mount point, then /run/netns bound on itself and
# made shared by `ip netns add` (its copy of the namespace below it): what the leak left here
LEAKED = (
    ROOT
    + "88 27 0:4 net:[4026532181] /run/netns/netns-deec6259-ba0e-a5a6-8f54-ca1d30ff4584 rw - nsfs nsfs rw\n"
    + "48 27 254:0 /run/netns /run/netns rw,relatime shared:2 - ext4 /dev/vda rw\n"
    + "49 48 0:4 net:[4026532181] /run/netns/netns-deec6259-ba0e-a5a6-8f54-ca1d30ff4584 rw shared:3 - nsfs nsfs rw\n"
)


def test_run_netns_is_no_mount_point_on_a_new_host():
    assert podman_net.netns_dir_propagation(ROOT) is None


def test_run_netns_bound_and_shared_as_ip_netns_leaves_it():
    assert podman_net.netns_dir_propagation(LEAKED) == "shared"


def test_a_private_or_slave_mount_point_is_not_shared():
    private = ROOT + "48 27 254:0 /run/netns /run/netns rw,relatime - ext4 /dev/vda rw\n"
    slave = ROOT + "48 27 254:0 /run/netns /run/netns rw,relatime master:2 - ext4 /dev/vda rw\n"
    assert podman_net.netns_dir_propagation(private) == "private"
    assert podman_net.netns_dir_propagation(slave) == "slave"


def test_the_last_mount_on_the_point_is_the_one_seen():
    stacked = LEAKED + "60 48 254:0 /run/netns /run/netns rw,relatime - ext4 /dev/vda rw\n"
    assert podman_net.netns_dir_propagation(stacked) == "private"


CONFLIST = {
    "cniVersion": "0.4.0",
    "name": "podman",
    "plugins": [
        {"type": "bridge", "bridge": "cni-podman0", "ipam": {"type": "host-local"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
        {"type": "tuning"},
    ],
}
CID = "a6c5308871468ed0f29399007129f575b1415f102f1b495ecc58a548203b7efe"
NETNS = "/run/netns/netns-deec6259-ba0e-a5a6-8f54-ca1d30ff4584"


def cache_entry() -> dict:
    """libcni's cache of one attachment, as CNI 1.1 wrote it for Podman 4.3 (trimmed)."""
    return {
        "kind": "cniCacheV1",
        "containerId": CID,
        "config": base64.b64encode(json.dumps(CONFLIST).encode()).decode(),
        "ifName": "eth0",
        "networkName": "podman",
        "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "explorer-redis-userns-58382737-0"]],
        "capabilityArgs": {
            "aliases": {"podman": ["a6c530887146"]},
            "portMappings": [{"hostPort": 40179, "containerPort": 6379, "protocol": "tcp", "hostIP": "127.0.0.1"}],
        },
        "result": {
            "cniVersion": "0.4.0",
            "interfaces": [
                {"mac": "4e:cc:7d:a6:4d:09", "name": "cni-podman0"},
                {"mac": "32:a5:b5:22:71:dd", "name": "vethfe56e987"},
                {"mac": "86:43:7b:f0:88:4a", "name": "eth0", "sandbox": NETNS},
            ],
            "ips": [{"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 2, "version": "4"}],
        },
    }


@pytest.fixture
def cni(tmp_path, monkeypatch):
    """libcni's cache, host-local's reservations and CNI's plugins in a temp dir: each plugin a
    script that logs its command, its type and what it was given."""
    results, networks, plugins = tmp_path / "results", tmp_path / "networks", tmp_path / "plugins"
    for directory in (results, networks / "podman", plugins):
        directory.mkdir(parents=True)
    (results / f"podman-{CID}-eth0").write_text(json.dumps(cache_entry()))
    (networks / "podman" / "10.88.0.2").write_text(f"{CID}\r\neth0")
    (networks / "podman" / "last_reserved_ip.0").write_text("10.88.0.2")
    for name in ("bridge", "portmap", "firewall", "tuning"):
        script = plugins / name
        script.write_text(
            f'#!/bin/sh\necho "$CNI_COMMAND {name} $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS" >> {tmp_path}/log\ncat > {tmp_path}/{name}.json\n'
        )
        script.chmod(0o755)
    monkeypatch.setattr(podman_net, "CNI_RESULTS", results)
    monkeypatch.setattr(podman_net, "CNI_NETWORKS", networks)
    monkeypatch.setattr(podman_net, "CNI_PLUGIN_DIRS", (str(tmp_path / "none"), str(plugins)))
    return tmp_path


def test_an_attachment_read_from_cnis_cache(cni):
    (found,) = podman_net.attachments(CID)
    assert (found.network, found.interface, found.netns) == ("podman", "eth0", NETNS)
    assert (found.address, found.veth, found.name) == ("10.88.0.2", "vethfe56e987", "explorer-redis-userns-58382737-0")
    assert podman_net.attachments("0" * 64) == []


def test_cni_del_runs_the_plugins_in_reverse_with_what_cni_cached(cni):
    (found,) = podman_net.attachments(CID)
    podman_net.cni_del(found, NETNS)
    log = (cni / "log").read_text().splitlines()
    assert [line.split()[:2] for line in log] == [["DEL", t] for t in ("tuning", "firewall", "portmap", "bridge")]
    assert log[0].split()[2:5] == [CID, NETNS, "eth0"]
    assert "K8S_POD_NAME=explorer-redis-userns-58382737-0" in log[0]
    portmap = json.loads((cni / "portmap.json").read_text())
    assert portmap["name"] == "podman" and portmap["cniVersion"] == "0.4.0"
    assert portmap["runtimeConfig"] == {"portMappings": cache_entry()["capabilityArgs"]["portMappings"]}
    assert portmap["prevResult"] == cache_entry()["result"]
    assert "runtimeConfig" not in json.loads((cni / "bridge.json").read_text())  # asks for no capability
    assert podman_net.attachments(CID) == []  # the cache entry goes once every plugin has undone its part


def test_a_plugin_that_fails_stops_the_teardown_and_keeps_the_cache(cni):
    (cni / "plugins" / "firewall").write_text(
        '#!/bin/sh\necho \'{"code": 999, "msg": "iptables: no chain"}\'\nexit 1\n'
    )
    (found,) = podman_net.attachments(CID)
    with pytest.raises(BackendError, match="firewall plugin could not undo podman.*no chain"):
        podman_net.cni_del(found, NETNS)
    assert podman_net.attachments(CID) == [found]


def test_reservations_are_host_locals_files_that_name_the_container(cni):
    assert [p.name for p in podman_net.reservations(CID)] == ["10.88.0.2"]
    assert podman_net.reservations("0" * 64) == []


def test_mounted_types_sees_a_namespace_below_another_mount_of_run_netns():
    assert podman_net.mounted_types(NETNS, LEAKED) == ["nsfs", "nsfs"]
    assert podman_net.mounted_types(NETNS, ROOT) == []


def test_explorer_names_its_containers_so_and_podman_names_its_namespaces_so():
    assert podman_net.EXPLORER_NAME.match("explorer-redis-userns-58382737-0")
    assert podman_net.EXPLORER_NAME.match("explorer-my-web.app-userns-58382737-12")
    assert not podman_net.EXPLORER_NAME.match("redis-userns-58382737-0")
    assert not podman_net.EXPLORER_NAME.match("explorer-redis")
    assert podman_net.PODMAN_NETNS.match(NETNS.rsplit("/")[-1])
    assert not podman_net.PODMAN_NETNS.match("explorer-nspawn-58382737-0-123")
