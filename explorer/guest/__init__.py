"""What runs inside the workload's environment: the guest-view script (both sides) and, for
the VM, the init. Their output is line-based so that any channel can carry it."""

from __future__ import annotations

import socket
import threading
import time
from importlib import resources
from pathlib import Path

from explorer.backends.base import GuestProcess, GuestView
from explorer.errors import BackendError

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
    ours = {fields.get("viewer_pid", ""), *map(str, agents)}
    processes = [p for p in processes if str(p.pid) not in ours]
    return GuestView(
        kernel_release=fields.get("kernel_release", ""),
        boot_id=fields.get("boot_id") or None,
        processes=processes,
        channel=channel,
        agent_pids=agents,
    )


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


VIEW_PORT = "explorer.view"  # the virtio-serial port the microVM's init serves views on


class ViewChannel:
    """The host end of the microVM's view port (QEMU's UNIX socket for it): a request line
    ("view N"), and back the view block the guest took then, which names N. Connected when the
    VM is created and kept open, so that the guest's read waits for a request instead of
    polling. A late answer to an earlier request that timed out is recognised and dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._requests = 0

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect to QEMU's socket, which exists once QEMU has started; retried until then."""
        deadline = time.monotonic() + timeout_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise BackendError(f"could not connect to the guest view port {self.path}: {exc}") from exc
                time.sleep(0.02)
                continue
            self._sock = sock
            return

    def request(self, timeout_s: float) -> GuestView:
        """A view taken after this call; BackendError naming what came back if none did in time."""
        if self._sock is None:
            raise BackendError(f"the guest view port {self.path} is not connected")
        self._requests += 1
        number = self._requests
        deadline = time.monotonic() + timeout_s
        data = bytearray()
        try:
            self._sock.settimeout(timeout_s)
            self._sock.sendall(f"view {number}\n".encode())
            while (block := _answer(bytes(data).decode(errors="replace"), number)) is None:
                self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise BackendError("the guest view port closed before a view came back")
                data += chunk
        except TimeoutError as exc:
            said = bytes(data[-200:]).decode(errors="replace")
            raise BackendError(f"the guest sent no view on its view port in {timeout_s:.0f}s"
                               + (f" (it sent {said!r})" if said else "")) from exc
        view = parse_view(block, channel=f"virtio-serial port {VIEW_PORT}")
        if view is None:
            raise BackendError("the guest's answer on its view port was not a view block")
        return view

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _answer(text: str, number: int) -> str | None:
    """The complete view block in `text` that answers request `number`, or None."""
    start = text.find(BEGIN)
    while start >= 0:
        stop = text.find(END, start)
        if stop < 0:
            return None
        block = text[start : stop + len(END)]
        if f"\nrequest={number}\n" in block:
            return block
        start = text.find(BEGIN, stop)
    return None
