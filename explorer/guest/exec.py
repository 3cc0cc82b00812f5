"""A container's channel: `docker exec` of the view script in the running container."""

from __future__ import annotations

from docker.errors import APIError
from docker.models.containers import Container

from explorer.errors import BackendError
from explorer.guest import parse_view, view_script
from explorer.model import GuestView, Target


class DockerExec:
    """Takes the Docker SDK's Container, which the Docker engine's targets hold."""

    def view(self, target: Target[Container]) -> GuestView:
        try:
            result = target.held.exec_run(["/bin/sh", "-c", view_script()], demux=False)
        except APIError as exc:
            raise BackendError(f"docker exec into {target.name} failed: {exc.explanation}") from exc
        output = result.output
        assert isinstance(output, bytes), "exec_run without stream or demux returns the output whole"
        text = output.decode(errors="replace")
        view = parse_view(text, channel="docker exec /bin/sh")
        if result.exit_code != 0 or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {text.strip()[-300:]}")
        return view
