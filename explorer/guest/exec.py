"""A container's channel: an exec in the running container, through the engine's Docker API
(`docker exec`; `podman exec` through Podman's compatible one): the view script, and the inside
probe."""

from __future__ import annotations

import socket
import time

from docker.errors import APIError, DockerException
from docker.models.containers import Container
from docker.utils.socket import consume_socket_output, demux_adaptor, frames_iter

from explorer.errors import BackendError
from explorer.guest import parse_view, view_script
from explorer.guest.handles import RunningContainer
from explorer.model import GuestView, InsideDelivery, InsideOutput, InsideProgram, Target

# Where the probe lands: the first of these that is a writable directory. /tmp and / are the
# container's writable layer (a copy there, never a host mount); a read-only root, or an image
# without /tmp, leaves /dev, the container's own tmpfs (Docker and Podman mount it without noexec).
PLACES = ("/tmp", "/var/tmp", "/", "/dev")
DELIVER = (
    "for d in " + " ".join(PLACES) + "; do "
    '[ -d "$d" ] && [ -w "$d" ] || continue; '
    'f="${d%/}/$1"; '
    'cat > "$f" && chmod 0755 "$f" && echo "$f" && exit 0; '
    'rm -f "$f"; exit 1; '
    "done; echo 'no writable directory among " + " ".join(PLACES) + "' >&2; exit 1"
)


class DockerExec:
    """Takes the Docker SDK's Container, which the Docker and Podman engines' targets hold;
    `tool` names the engine's exec in errors and in the view's channel."""

    def __init__(self, tool: str = "docker exec") -> None:
        self.tool = tool

    def view(self, target: Target[RunningContainer]) -> GuestView:
        try:
            result = target.held.container.exec_run(["/bin/sh", "-c", view_script()], demux=False)
        except APIError as exc:
            raise BackendError(f"{self.tool} into {target.name} failed: {exc.explanation}") from exc
        output = result.output
        assert isinstance(output, bytes), "exec_run without stream or demux returns the output whole"
        text = output.decode(errors="replace")
        view = parse_view(text, channel=f"{self.tool} /bin/sh")
        if result.exit_code != 0 or view is None:
            raise BackendError(f"the guest-view script failed in {target.name}: {text.strip()[-300:]}")
        return view

    def inside(self, target: Target[RunningContainer], program: InsideProgram) -> InsideDelivery:
        """The probe written into the container by an exec of `sh` as root reading it on stdin (a
        copy into its writable layer; docker cp did not reach a gVisor container's), each run an
        exec as root (the probe drops to the workload's user itself), then removed."""
        container = target.held.container
        with open(program.binary, "rb") as binary:
            data = binary.read()
        code, out, err = _exec(container, ["/bin/sh", "-c", DELIVER, "sh", program.name], self.tool, stdin=data)
        if code != 0:
            raise BackendError(
                f"the inside probe could not be written into {target.name}: {(err or out).strip()[-300:]}"
            )
        path = out.strip().splitlines()[-1]
        where = (
            "the container's own tmpfs /dev (its root is read-only or has no /tmp)"
            if path.startswith("/dev/")
            else ("its writable layer")
        )
        outputs: list[InsideOutput] = []
        removal = None
        try:
            for run in program.runs:
                started = time.monotonic()
                user, args = self._user_of(container, run.args)
                code, out, err = _exec(
                    container, [path, "--timeout", str(program.timeout_s), *args], self.tool, user=user
                )
                outputs.append(InsideOutput(run.label, code, out, err, time.monotonic() - started))
        finally:
            code, out, err = _exec(container, ["/bin/rm", "-f", path], self.tool)
            if code != 0:
                removal = f"rm -f {path} exited {code}: {(err or out).strip()[-200:]}"
        how = (
            f"{self.tool} (as root inside) of sh reading it on stdin into {path}, {where}; each run an exec, as the "
            "workload process's own uid:gid (as `exec -u` would) and as root inside; removed after"
        )
        return InsideDelivery(how, outputs, removal)

    def _user_of(self, container: Container, args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """The exec's user for a run: --as-pid PID becomes that process's own uid:gid, the exec
        starting as it (root inside may hold no capability to drop to it: docker exec -u 0 of a
        container whose user is not root has none), else root."""
        if "--as-pid" not in args:
            return "0", args
        index = args.index("--as-pid")
        pid = args[index + 1]
        code, out, _err = _exec(container, ["/bin/cat", f"/proc/{pid}/status"], self.tool)
        ids = {line.split(":")[0]: line.split()[1:3] for line in out.splitlines() if line.startswith(("Uid:", "Gid:"))}
        if code != 0 or "Uid" not in ids or "Gid" not in ids:
            return "0", args  # the probe says it could not read them itself, and why
        return f"{ids['Uid'][1]}:{ids['Gid'][1]}", (*args[:index], *args[index + 2 :])


def _exec(
    container: Container, argv: list[str], tool: str, stdin: bytes | None = None, user: str = "0"
) -> tuple[int | None, str, str]:
    """One exec as `user` inside (root by default), waited for: (exit code, stdout, stderr). With
    `stdin`, its bytes are written to the exec's stdin and then closed (the API's attached socket)."""
    if container.client is None:
        raise BackendError(f"the container {container.name} has no client to exec with")
    api = container.client.api
    try:
        exec_id = api.exec_create(container.id, argv, stdin=stdin is not None, user=user)["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw = _socket_of(sock)
        try:
            if stdin is not None:
                raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
            frames = (demux_adaptor(*frame) for frame in frames_iter(sock, tty=False))
            out, err = consume_socket_output(frames, demux=True)
        finally:
            sock.close()
        code = api.exec_inspect(exec_id).get("ExitCode")
    except (APIError, DockerException, OSError) as exc:
        raise BackendError(f"{tool} of {argv[0]} in {container.name} failed: {exc}") from exc
    return code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")


def _socket_of(stream: object) -> socket.socket:
    """The hijacked socket under what exec_start(socket=True) hands back (a SocketIO over it)."""
    raw = getattr(stream, "_sock", stream)
    if not isinstance(raw, socket.socket):
        raise BackendError(f"docker exec gave no socket to write the probe to ({type(raw).__name__})")
    return raw
