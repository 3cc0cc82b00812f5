"""Podman's network plumbing as explorer reads it, from text the kernel and CNI write: no Podman."""

from __future__ import annotations

from explorer.engines import podman_net

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
