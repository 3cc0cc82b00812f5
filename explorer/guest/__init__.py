"""What runs inside the workload's environment: the guest-view script (both sides) and, for
the VM, the init. Their output is line-based so that any channel can carry it."""

from __future__ import annotations

import threading
import time
from importlib import resources
from pathlib import Path

from explorer.model import GuestProcess, GuestView

BEGIN = "EXPLORER-VIEW begin"
END = "EXPLORER-VIEW end"


def view_script() -> str:
    """POSIX sh, builtins and cat only, so it runs in any image that has /bin/sh."""
    return resources.files(__package__).joinpath("view.sh").read_text()


def parse_view(text: str, channel: str) -> GuestView | None:
    """The last complete view block in `text` (a console may hold several), or None."""
    stop = text.rfind(END)
    start = text.rfind(BEGIN, 0, max(stop, 0))
    if start < 0 or stop < 0:
        return None  # a block still being printed is not complete: the one before it counts
    fields: dict[str, str] = {}
    processes: list[GuestProcess] = []
    for raw in text[start + len(BEGIN) : stop].splitlines():
        line = raw.strip()
        if line.startswith("proc "):
            parts = line.split(" ", 4)
            if len(parts) == 5 and parts[1].isdigit() and parts[2].isdigit():
                pid, ppid, kthread, name = int(parts[1]), int(parts[2]), parts[3] == "1", parts[4]
                processes.append(GuestProcess(pid, ppid, name, kthread))
        elif "=" in line:
            key, _, value = line.partition("=")
            fields[key] = value
    # The shell running this script, and explorer's init and watcher in a VM, are explorer's
    # own: they are left out of the listing, and the agent's are reported apart.
    agents = [int(pid) for pid in fields.get("agent_pids", "").split() if pid.isdigit()]
    names = {p.pid: p.name for p in processes}
    viewer = next((p for p in processes if str(p.pid) == fields.get("viewer_pid")), None)
    ours = {fields.get("viewer_pid", ""), *map(str, agents)}
    processes = [p for p in processes if str(p.pid) not in ours]
    return GuestView(
        kernel_release=fields.get("kernel_release", ""),
        boot_id=fields.get("boot_id") or None,
        processes=processes,
        channel=channel,
        agent_pids=agents,
        agent_names=[names.get(pid, "?") for pid in agents],
        viewer_parent=viewer.ppid if viewer is not None else None,
        uptime_s=_float(fields.get("uptime_s")),
    )


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def set_apart(view: GuestView, pids: list[int]) -> GuestView:
    """`view` with `pids` (explorer's own processes in the guest: an ssh session taking the
    view, say) moved out of the listing and reported as explorer's."""
    names = {p.pid: p.name for p in view.processes}
    mine = [pid for pid in pids if pid in names and pid not in view.agent_pids]
    view.processes = [p for p in view.processes if p.pid not in mine]
    view.agent_pids = [*view.agent_pids, *mine]
    view.agent_names = [*view.agent_names, *(names[pid] for pid in mine)]
    return view


# Console markers of the VM's init (explorer/guest/init.sh) and initramfs, one per line:
#
#   EXPLORER-MARK <name> uptime_s=<guest /proc/uptime> [key=value ...]
#
# in the order they are printed during a boot:
#   initramfs      the initramfs's /init started (kernel booted; modules not loaded yet)
#   init           the disk's init started as PID 1 (after switch_root, /proc mounted)
#   network        eth0 is configured: from here a forwarded connection reaches the guest
#   workload       the workload process started: pid=<guest pid>
#   ready-inside   the workload's port is listening inside the guest: port=<port>;
#                  uptime_s is when the port was first seen listening
#   (from here the init answers view requests on the view port, see ViewChannel)
#   workload-exited  the workload ended: code=<exit status>; the guest then powers off
# and, on failure: initramfs-error (insmod=, mount=, no-device=, no-init=), net-error (dev=),
# config-error (file=), workdir-error, view-error (port=, open=). Values never contain spaces.
# The kernel's own first console line starts with KERNEL_BANNER ("guest kernel up").
MARK = "EXPLORER-MARK"
KERNEL_BANNER = "Linux version "


def parse_marks(text: str) -> dict[str, dict[str, str]]:
    """{mark name: {key: value}} for each EXPLORER-MARK in `text`, first occurrence kept
    (a console holds one boot; a reboot's repeats do not move a milestone)."""
    marks: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        start = line.find(MARK + " ")
        if start < 0:
            continue
        name, *pairs = line[start + len(MARK) + 1 :].split()
        fields = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        marks.setdefault(name, fields)
    return marks


class ConsoleWatcher(threading.Thread):
    """Tails a VM's serial console file, stamping each milestone (the kernel banner, the init's
    marks) with the host's monotonic clock when its line appears: 20 ms resolution, whatever
    the cadence of whoever polls. Only complete lines count; `marks` are their fields."""

    def __init__(self, console: Path, interval_s: float = 0.02) -> None:
        super().__init__(name=f"console:{console.parent.name}", daemon=True)
        self.console, self.interval_s = console, interval_s
        self.data, self.seen = bytearray(), dict[str, float]()
        self.marks: dict[str, dict[str, str]] = {}
        self._lock, self._stopping = threading.Lock(), threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.read_new()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=2)
        self.read_new()  # the last words, kept once the file is gone

    def read_new(self) -> None:
        with self._lock:
            try:
                with open(self.console, "rb") as handle:
                    handle.seek(len(self.data))
                    chunk = handle.read()
            except OSError:
                return
            if not chunk:
                return
            now = time.monotonic()
            self.data += chunk
            text = self.text()
            complete = text[: text.rfind("\n") + 1]
            if KERNEL_BANNER in complete:
                self.seen.setdefault("kernel", now)
            self.marks = parse_marks(complete)
            for name in self.marks:
                self.seen.setdefault(name, now)

    def text(self) -> str:
        return bytes(self.data).decode(errors="replace")

    def tail(self, lines: int = 20) -> str:
        self.read_new()
        return "\n".join(self.text().rstrip().splitlines()[-lines:])
