"""The microVM's channel: the view its guest's init sends back on the virtio-serial view port
(explorer/guest/viewport.py), which the engine connected when it made the RunningVM."""

from __future__ import annotations

from explorer.errors import BackendError
from explorer.guest.handles import RunningVM
from explorer.model import GuestView, Target


class ViewPort:
    """The channel part: the view the connected port's guest sends back when asked."""

    WAIT_S = 15.0

    def view(self, target: Target[RunningVM]) -> GuestView:
        vm = target.held
        port = vm.view  # connected by the engine at create
        if port is None:
            raise BackendError(f"{target.name} has no guest view port")
        try:
            return port.request(self.WAIT_S)
        except BackendError as exc:
            raise BackendError(f"{target.name}: {exc}", hint="its console's last lines:\n" + vm.tail(20)) from exc
