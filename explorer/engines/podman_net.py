"""Podman's network plumbing on the host, which it can leave behind when a container goes: the
container's network namespace (/run/netns/netns-UUID), the veth pair CNI's bridge plugin put in
it, the address CNI's host-local IPAM reserved (/var/lib/cni/networks/NETWORK/ADDRESS), and the
rules of CNI's bridge (masquerade), portmap (the published port's DNAT) and firewall plugins.

Why Podman 4.3 leaks them on a new host: the OCI runtime makes a user-namespaced container's
network namespace, and Podman bind-mounts it into /run/netns only after conmon has started, in
a mount namespace of its own that Podman copied from the host's for that container. Unless
/run/netns is a shared mount point, the bind mount never reaches conmon's copy: when the
container exits, the `podman container cleanup` conmon runs finds an empty file where the
namespace should be, takes the network for torn down already and saves the container without
it, and the removal that follows finds nothing left to tear down (podman#23685, fixed in
Podman 5.3 by making /run/netns shared on that path too).
Podman's path for other containers and `ip netns add` both make /run/netns a shared mount point
on first use: where one of them ran first (explorer's nspawn side, the native reference), nothing
leaks. `share_netns_dir` does the same before every user-namespaced container.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from explorer.errors import BackendError

NETNS_DIR = Path("/run/netns")  # rootful Podman's (and `ip netns`'s) network namespaces
RECORDS = Path(os.environ.get("EXPLORER_RUN_DIR", "/run/explorer")) / "podman-net"


def netns_dir_propagation(mountinfo: str, path: str = str(NETNS_DIR)) -> str | None:
    """How the mount on `path` propagates ('shared', 'slave', 'private'); None where `path` is
    no mount point. `mountinfo`: /proc/self/mountinfo, whose last mount on a point is the one seen."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[4].encode().decode("unicode_escape") == path and "-" in fields:
            optional = fields[6 : fields.index("-")]
            found = (
                "shared"
                if any(f.startswith("shared:") for f in optional)
                else ("slave" if any(f.startswith("master:") for f in optional) else "private")
            )
    return found


def share_netns_dir() -> str:
    """Make NETNS_DIR a shared mount point (bound on itself first where it is none), as Podman's
    own NewNS and `ip netns add` do: what it found ('shared' when nothing was to be done)."""
    with _locked():
        found = netns_dir_propagation(Path("/proc/self/mountinfo").read_text())
        if found == "shared":
            return found
        NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        steps = [["mount", "--make-rshared", str(NETNS_DIR)]]
        if found is None:
            steps.insert(0, ["mount", "--rbind", str(NETNS_DIR), str(NETNS_DIR)])
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
            if done.returncode != 0:
                raise BackendError(
                    f"could not make {NETNS_DIR} a shared mount point ({' '.join(argv)}: {done.stderr.strip()}); "
                    "without it Podman 4.3 leaks each user-namespaced container's network namespace",
                    hint="run explorer as root, or run `mount --make-rshared /run/netns` (after "
                    "`mount --rbind /run/netns /run/netns` where it is no mount point)",
                )
        return found or "no mount point"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One explorer at a time changes /run/netns's mount or the records (two binds would stack)."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    with open(RECORDS / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
