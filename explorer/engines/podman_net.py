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

What remains (a Podman that fails otherwise, a run killed with SIGKILL) is found from records:
each started container's namespace and addresses are written to RECORDS with the run's id and
the owner's PID, as its labels carry them; `clean` tears down those whose container is gone,
through CNI's own plugins (DEL, with what CNI cached when it added them), as Podman would have.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from explorer.errors import BackendError
from explorer.model import owner_alive

NETNS_DIR = Path("/run/netns")  # rootful Podman's (and `ip netns`'s) network namespaces
CNI_RESULTS = Path("/var/lib/cni/results")  # libcni's cache: NETWORK-CONTAINERID-IFNAME, one per attachment
CNI_NETWORKS = Path("/var/lib/cni/networks")  # host-local's reservations: NETWORK/ADDRESS holds the container ID
CNI_PLUGIN_DIRS = ("/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni", "/usr/lib/cni", "/opt/cni/bin")
RECORDS = Path(os.environ.get("EXPLORER_RUN_DIR", "/run/explorer")) / "podman-net"
PODMAN_NETNS = re.compile(r"^netns-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")  # Podman's names in NETNS_DIR
# explorer's container names (explorer-SCENARIO-SIDE-RUN-INDEX), as CNI's cache keeps them
EXPLORER_NAME = re.compile(r"^explorer-[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}-\d+$")
PLUGIN_TIMEOUT_S = 30


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


@dataclass(frozen=True)
class Attachment:
    """One container's attachment to a CNI network, as libcni cached it when it added it."""

    cache: Path
    container_id: str
    name: str  # the container's name (CNI_ARGS K8S_POD_NAME, which Podman sets)
    network: str
    interface: str  # inside the namespace, e.g. eth0
    netns: str
    address: str  # e.g. 10.88.0.2 (no prefix length)
    veth: str  # its host end


def attachments(container_id: str | None = None) -> list[Attachment]:
    """What libcni's cache holds (of one container)."""
    found = []
    for path in sorted(CNI_RESULTS.glob("*")) if CNI_RESULTS.is_dir() else []:
        if container_id is not None and f"-{container_id}-" not in path.name:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            found.append(_attachment(path, json.loads(path.read_text())))
    return found


def _attachment(path: Path, cache: dict[str, Any]) -> Attachment:
    result = cache.get("result") or {}
    interfaces = result.get("interfaces") or []
    inside = [i for i in interfaces if i.get("sandbox")]
    bridges = {p.get("bridge") for p in _conflist(cache).get("plugins", [])}
    hosts = [i["name"] for i in interfaces if not i.get("sandbox") and i.get("name") not in bridges]
    ips = [ip["address"].split("/")[0] for ip in result.get("ips") or []]
    return Attachment(
        cache=path,
        container_id=cache["containerId"],
        name=dict(cache.get("cniArgs") or []).get("K8S_POD_NAME", ""),
        network=cache["networkName"],
        interface=cache["ifName"],
        netns=inside[0]["sandbox"] if inside else "",
        address=ips[0] if ips else "",
        veth=hosts[0] if hosts else "",
    )


def _conflist(cache: dict[str, Any]) -> dict[str, Any]:
    conf = json.loads(base64.b64decode(cache["config"]))
    return conf if isinstance(conf, dict) else {}


@dataclass(frozen=True)
class NetRecord:
    """What explorer wrote down when one of its user-namespaced containers started."""

    container_id: str
    container: str
    run_id: str
    owner: int
    netns: str
    netns_inode: int
    addresses: tuple[str, ...]  # NETWORK/ADDRESS, as host-local reserves them
    veths: tuple[str, ...]

    @property
    def path(self) -> Path:
        return RECORDS / f"{self.owner}-{self.container_id}.json"


def record(container_id: str, container: str, run_id: str, netns: str, pid: int) -> NetRecord | None:
    """Write down a started container's namespace (`netns`, that of its process `pid`) and
    addresses; None where its process is gone (a workload that exited at once)."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None
    mine = [a for a in attachments(container_id) if a.netns == netns]
    entry = NetRecord(
        container_id,
        container,
        run_id,
        os.getpid(),
        netns,
        inode,
        tuple(f"{a.network}/{a.address}" for a in mine if a.address),
        tuple(a.veth for a in mine if a.veth),
    )
    with _locked():
        entry.path.write_text(json.dumps(asdict(entry)))
    return entry


def records() -> list[NetRecord]:
    found = []
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(path.read_text())
            data["addresses"], data["veths"] = tuple(data["addresses"]), tuple(data["veths"])
            found.append(NetRecord(**data))
    return found


def forget(entry: NetRecord) -> None:
    entry.path.unlink(missing_ok=True)


def netns_users(netns: str) -> list[int]:
    """PIDs of the processes in the network namespace mounted at `netns`."""
    try:
        wanted = os.stat(netns)
    except OSError:
        return []
    pids = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        with contextlib.suppress(OSError):
            held = os.stat(f"/proc/{pid}/ns/net")
            if (held.st_ino, held.st_dev) == (wanted.st_ino, wanted.st_dev):
                pids.append(int(pid))
    return pids


def mounted_types(path: str, mountinfo: str | None = None) -> list[str]:
    """The filesystem types mounted at `path`, bottom first ("nsfs" for a network namespace's
    bind mount; none for the empty file a namespace leaves where it was never mounted)."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 6 and "-" in fields and fields[4].encode().decode("unicode_escape") == path:
            found.append(fields[fields.index("-") + 1])
    return found


def cni_del(attachment: Attachment, netns: str) -> None:
    """Undo one attachment as libcni's DelNetworkList would: each plugin of the network's list in
    reverse order, run with DEL and the configuration, capabilities and result CNI cached when it
    added it (bridge deletes the veth pair and its masquerade, portmap the published port's DNAT,
    firewall its rules, host-local the address); the cache entry removed after."""
    cache = json.loads(attachment.cache.read_text())
    conflist = _conflist(cache)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": attachment.container_id,
        "CNI_NETNS": netns,  # "" once the namespace is gone: the plugins then skip what was in it
        "CNI_IFNAME": attachment.interface,
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in cache.get("cniArgs") or []),
        "CNI_PATH": ":".join(CNI_PLUGIN_DIRS),
    }
    version = conflist.get("cniVersion", "0.4.0")
    for plugin in reversed(conflist.get("plugins", [])):
        conf = {**plugin, "name": conflist.get("name", attachment.network), "cniVersion": version}
        wanted = plugin.get("capabilities") or {}
        caps = {k: v for k, v in (cache.get("capabilityArgs") or {}).items() if wanted.get(k)}
        if caps:
            conf["runtimeConfig"] = caps
        if cache.get("result") and _version(version) >= (0, 4, 0):
            conf["prevResult"] = cache["result"]
        binary = next((Path(d) / plugin["type"] for d in CNI_PLUGIN_DIRS if (Path(d) / plugin["type"]).is_file()), None)
        if binary is None:
            raise BackendError(f"CNI's {plugin['type']} plugin is not in {', '.join(CNI_PLUGIN_DIRS)}")
        done = subprocess.run(
            [str(binary)],
            check=False,
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            timeout=PLUGIN_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise BackendError(
                f"CNI's {plugin['type']} plugin could not undo {attachment.network} for container "
                f"{attachment.container_id[:12]}: {(done.stdout or done.stderr).strip()[-300:]}"
            )
    attachment.cache.unlink(missing_ok=True)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def reservations(container_id: str) -> list[Path]:
    """host-local's files that reserve an address for the container (their first line is its ID)."""
    found = []
    for path in CNI_NETWORKS.glob("*/*") if CNI_NETWORKS.is_dir() else []:
        if path.name.startswith(("last_reserved_ip", "lock")):
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if path.read_text().split()[:1] == [container_id]:
                found.append(path)
    return found


# From a private mount namespace: every mount of /run/netns itself detached (there only), the
# namespace's own mounts then reachable, detached and its file removed. The kernel detaches a
# removed file's mounts in every other mount namespace, the host's among them.
UNCOVER = 'while umount -l "$1" 2>/dev/null; do :; done; while umount -l "$2" 2>/dev/null; do :; done; rm -f "$2"'


def remove_netns(path: str) -> None:
    """Unmount a network namespace and remove its file, as `ip netns del` does. A namespace
    mounted before /run/netns became a mount point of its own stays mounted below that mount
    (out of reach of its path, and its file busy): it is removed from a private mount namespace."""
    for _ in mounted_types(path):
        subprocess.run(["umount", "-l", path], capture_output=True, check=False, timeout=30)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError:
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", UNCOVER, "sh", str(NETNS_DIR), path],
            capture_output=True,
            check=False,
            timeout=30,
        )
    if os.path.lexists(path) or mounted_types(path):
        raise BackendError(f"could not remove the network namespace {path}: it is still mounted")


def tear_down(netns: str, container_id: str) -> list[str]:
    """What one gone container left: each CNI attachment undone (its veth, rules and address), a
    reservation CNI no longer knew of, and the namespace unmounted and removed. What was removed."""
    removed = []
    live = netns if "nsfs" in mounted_types(netns) else ""
    for attachment in attachments(container_id):
        cni_del(attachment, live)
        removed.append(f"CNI address {attachment.address} ({attachment.network})")
        if attachment.veth:
            removed.append(f"veth {attachment.veth}")
    for reservation in reservations(container_id):
        reservation.unlink(missing_ok=True)
        removed.append(f"CNI address {reservation.name} ({reservation.parent.name})")
    if netns and os.path.lexists(netns):
        remove_netns(netns)
        removed.insert(0, f"network namespace {netns}")
    return [f"{what} (of container {container_id[:12]}, gone)" for what in removed]


def _keep(netns: str, inode: int | None = None) -> str | None:
    """Why a namespace must stay: a process in it, or another namespace now at its path."""
    if inode is not None and os.path.lexists(netns):
        with contextlib.suppress(OSError):
            if "nsfs" in mounted_types(netns) and os.stat(netns).st_ino != inode:
                return f"{netns} now holds another namespace"
    users = netns_users(netns)
    return f"{netns} is in use by PID {', '.join(map(str, users[:3]))}" if users else None


def clean(known: set[str], run_id: str | None = None) -> tuple[list[str], list[str]]:
    """Tear down what explorer's containers that Podman no longer has (IDs not in `known`) left
    on the host: those recorded by a run no longer running (or of `run_id`), then, for what an
    explorer without records left, CNI's cache entries named as explorer names its containers.
    (what was removed, what was kept and why)."""
    removed: list[str] = []
    kept: list[str] = []
    recorded = set()
    for entry in records():
        recorded.add(entry.container_id)
        if entry.container_id in known or (entry.run_id != run_id if run_id else owner_alive(entry.owner)):
            continue
        why = _keep(entry.netns, entry.netns_inode)
        if why:
            kept.append(f"network namespace of {entry.container} ({why})")
            continue
        removed += tear_down(entry.netns, entry.container_id)
        forget(entry)
    for attachment in attachments():
        if attachment.container_id in recorded | known or not EXPLORER_NAME.match(attachment.name):
            continue
        if run_id and f"-{run_id}-" not in attachment.name:
            continue
        why = _keep(attachment.netns)
        if why:
            kept.append(f"network namespace of {attachment.name} ({why})")
            continue
        removed += tear_down(attachment.netns, attachment.container_id)
    return removed, kept


def release(container_id: str) -> list[str]:
    """After this process removed its container: what Podman left of it torn down (nothing
    where Podman did its part), and the record forgotten."""
    mine = [e for e in records() if e.container_id == container_id and e.owner == os.getpid()]
    removed = []
    for entry in mine:
        if os.path.lexists(entry.netns) and _keep(entry.netns, entry.netns_inode) is None:
            removed += tear_down(entry.netns, entry.container_id)
        forget(entry)
    return removed


def strays(in_use: set[str]) -> list[str]:
    """Podman's namespaces in NETNS_DIR that no process holds and no container (`in_use`: their
    paths) claims: what a Podman that failed to tear down left."""
    found = []
    for path in sorted(NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []:
        if PODMAN_NETNS.match(path.name) and str(path) not in in_use and not netns_users(str(path)):
            found.append(str(path))
    return found
