"""The `vagrant` command, run with an argument list (never a shell) in a machine's own
VAGRANT_CWD: one wrapper for the engine (up, destroy, box) and the ssh channel."""

from __future__ import annotations

import subprocess
from pathlib import Path

from explorer.errors import BackendError, BackendUnavailable

HINT = "run scripts/setup-host (it installs vagrant and vagrant-libvirt)"


def vagrant(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["vagrant", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise BackendUnavailable("vagrant is not installed", hint=HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"vagrant {args[0]} did not finish in {timeout:.0f}s") from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-8:])
        raise BackendError(f"vagrant {args[0]} exited {exc.returncode}:\n{tail}") from exc
