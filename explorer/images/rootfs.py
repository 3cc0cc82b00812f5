"""A Debian root filesystem built offline with mmdebstrap, kept as a tarball in the cache.

The same tarball feeds the Docker image and the VM disk, so both sides run the same bits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from explorer.errors import BackendUnavailable, BuildError
from explorer.images import cache_dir
from explorer.scenario import Recipe

# Documentation, manual pages and translations are not needed to run a server.
EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")


def rootfs_path(recipe: Recipe) -> Path:
    return cache_dir("rootfs") / f"{recipe.content_hash()}.tar"


def mmdebstrap_argv(recipe: Recipe, output: Path, files_dir: Path) -> list[str]:
    argv = ["mmdebstrap", "--variant=essential", "--quiet", f"--include={','.join(recipe.packages)}"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES]
    for index, (target, _) in enumerate(recipe.files):
        argv.append(f"--customize-hook=upload {files_dir / str(index)} {target}")
    return argv + [recipe.suite, str(output)]


def build_rootfs(recipe: Recipe, timeout_s: float = 900.0) -> Path:
    """Return the cached rootfs tarball for `recipe`, building it first if needed."""
    out = rootfs_path(recipe)
    if out.exists():
        return out
    if shutil.which("mmdebstrap") is None:
        raise BackendUnavailable(
            "mmdebstrap is not installed", hint="run scripts/setup-host (or apt-get install mmdebstrap)"
        )
    with tempfile.TemporaryDirectory(prefix="explorer-rootfs-", dir=out.parent) as tmp:
        files_dir = Path(tmp, "files")
        files_dir.mkdir()
        for index, (_, content) in enumerate(recipe.files):
            (files_dir / str(index)).write_text(content)
        partial = Path(tmp, "rootfs.tar")
        argv = mmdebstrap_argv(recipe, partial, files_dir)
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"mmdebstrap did not finish in {timeout_s:.0f}s") from exc
        except subprocess.CalledProcessError as exc:
            raise BuildError(
                f"mmdebstrap failed for {recipe.suite} with packages {', '.join(recipe.packages)}:\n"
                + _tail(exc.stderr),
                hint="check the package names (apt-cache policy NAME) and the host's apt sources",
            ) from exc
        os.replace(partial, out)
    return out


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in kept)
