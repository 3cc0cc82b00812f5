"""The microVM's channel: the view its guest's init sends back on the virtio-serial view port
(explorer/guest/viewport.py), which the engine connected when it made the RunningVM."""

from __future__ import annotations

from explorer.errors import BackendError
from explorer.guest.handles import RunningVM
from explorer.model import GuestView, InsideDelivery, InsideOutput, InsideProgram, Target


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

    def inside(self, target: Target[RunningVM], program: InsideProgram) -> InsideDelivery:
        """The probe sent on the view port to explorer's init in the guest, which writes it into
        explorer's own directory on the VM's disk, runs it as its child (root inside; --as-pid for
        the workload's user) and removes it. Nothing of it is in the image: it comes and goes."""
        vm = target.held
        port = vm.view
        if port is None:
            raise BackendError(f"{target.name} has no guest view port")
        with open(program.binary, "rb") as binary:
            data = binary.read()
        wait_s = len(program.runs) * (program.timeout_s + 10) + 30
        try:
            answer = port.inside(data, program.timeout_s, [list(run.args) for run in program.runs], wait_s)
        except BackendError as exc:
            raise BackendError(f"{target.name}: {exc}", hint="its console's last lines:\n" + vm.tail(20)) from exc
        outputs = [
            InsideOutput(run.label, got.returncode, got.stdout, got.stderr, got.wall_s)
            for run, got in zip(program.runs, answer.runs, strict=False)
        ]
        how = (
            f"sent on the virtio-serial view port to explorer's init in the guest, which wrote it into {answer.path} "
            "(explorer's own directory on this instance's disk, not in the image), ran it as its child and removed it"
        )
        return InsideDelivery(how, outputs, None)
