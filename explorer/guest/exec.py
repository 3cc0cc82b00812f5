"""A container's channel: an exec of the view script in the running container, through the
engine's Docker API (`docker exec`; `podman exec` through Podman's compatible one)."""

from __future__ import annotations

from docker.errors import APIError
from docker.models.containers import Container

from explorer.errors import BackendError
from explorer.guest import parse_view, view_script
from explorer.model import GuestView, Target


class DockerExec:
    """Takes the Docker SDK's Container, which the Docker and Podman engines' targets hold;
    `tool` names the engine's exec in errors and in the view's channel."""

    def __init__(self, tool: str = "docker exec") -> None:
        self.tool = tool

    def view(self, target: Target[Container]) -> GuestView:
        try:
            result = target.held.exec_run(["/bin/sh", "-c", view_script()], demux=False)
        except APIError as exc:
            raise BackendError(f"{self.tool} into {target.name} failed: {exc.explanation}") from exc
        output = result.output
        assert isinstance(output, bytes), "exec_run without stream or demux returns the output whole"
        text = output.decode(errors="replace")
        view = parse_view(text, channel=f"{self.tool} /bin/sh")
        if result.exit_code != 0 or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {text.strip()[-300:]}")
        return view
