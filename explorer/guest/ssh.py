"""`vagrant ssh` as the Vagrant side's way into its guest.

The view over ssh runs in an ssh session that explorer opened: sshd forks a privileged and a
user process per session, and the shell that takes the view is their child. Those processes,
and any other session's (an earlier `vagrant ssh` of explorer's or Vagrant's still closing),
are not the guest OS's, so they are set apart (as the microVM's init and watcher are),
leaving the listening sshd among the OS's services.
"""

from __future__ import annotations

from explorer.errors import BackendError
from explorer.guest import parse_view, set_apart, view_script
from explorer.guest.agent import inside_by_agent
from explorer.guest.handles import VagrantMachine
from explorer.model import GuestView, InsideDelivery, InsideProgram, Target
from explorer.vagrant_cli import vagrant


def session_pids(view: GuestView) -> list[int]:
    """Every ssh session's processes: the descendants of the listening sshd (the viewer's
    ancestor whose parent is PID 1). The one taking the view is explorer's; another is an
    earlier connection of explorer's or Vagrant's still closing. None is the guest OS's own:
    a booted OS opens no ssh session to itself."""
    parents = {p.pid: p.ppid for p in view.processes}
    listener, pid = None, view.viewer_parent
    while pid is not None and pid in parents:
        if parents[pid] in (0, 1):
            listener = pid
            break
        pid = parents[pid]
    if listener is None:
        return []
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(listener, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


class VagrantSsh:
    """`vagrant ssh -c VIEW` in the machine's VAGRANT_CWD (the engine keeps it in the handle)."""

    TIMEOUT_S = 120

    def view(self, target: Target[VagrantMachine]) -> GuestView:
        machine = target.held
        machine.wait_for_up(self.TIMEOUT_S)  # vagrant ssh while `vagrant up` still runs may meet its lock
        out = vagrant(
            ["ssh", "--no-tty", "-c", view_script()], machine.workdir, env=machine.env, timeout=self.TIMEOUT_S
        ).stdout
        view = parse_view(out, channel="vagrant ssh")
        if view is None:
            raise BackendError(f"vagrant ssh printed no guest view for {target.name}: {out.strip()[-300:]}")
        return set_apart(view, session_pids(view))

    def inside(self, target: Target[VagrantMachine], program: InsideProgram) -> InsideDelivery:
        """The inside probe through the guest's agent (vagrant-libvirt's qemu_use_agent channel), as
        the full-OS VM's: ssh would run it under an ssh session's user, not as the workload's."""
        domain = target.held.domain
        if domain is None:
            raise BackendError(f"{target.name} has no libvirt domain known yet: its guest agent cannot be reached")
        return inside_by_agent(domain, program)
