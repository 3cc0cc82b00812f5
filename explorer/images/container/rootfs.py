"""A Debian root filesystem built offline with mmdebstrap, kept as a tarball in the cache.

The same tarball feeds the Docker image and the VM disk, so both sides run the same bits.
What a build writes goes under names that carry explorer's PID (partials.py): the tarball is
renamed into place only once complete, and `explorer clean` can tell a dead build's remains
from a live one's. mmdebstrap's own temporary chroot goes there too (TMPDIR), never /tmp.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from explorer.cache import cache_dir
from explorer.errors import BackendUnavailable, BuildError
from explorer.images import partials
from explorer.images.container.rootfs_files import add_files
from explorer.scenario import Recipe
from explorer.tools import run_session

# Documentation, manual pages and translations are not needed to run a server.
EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")


def rootfs_path(recipe: Recipe) -> Path:
    return cache_dir("rootfs") / f"{recipe.content_hash()}.tar"


def mmdebstrap_argv(recipe: Recipe, output: Path) -> list[str]:
    """Fixed options, the recipe's (schema-checked) suite and package names, our own output
    path. No hooks: the recipe's files are added to the tarball afterwards (rootfs_files)."""
    argv = ["mmdebstrap", "--variant=essential", f"--include={','.join(recipe.packages)}"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES]
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
    with partials.build_dir(out.parent, partials.ROOTFS) as tmp, partials.build_dir(None, partials.MMDEBSTRAP) as work:
        built = tmp / "mmdebstrap.tar"
        env = {**os.environ, "TMPDIR": str(work)}  # its chroot, so that it is removed with ours
        try:
            done = run_session(mmdebstrap_argv(recipe, built), timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise BuildError(
                f"mmdebstrap for {recipe.suite} ({', '.join(recipe.packages)}) did not finish in "
                f"{timeout_s:g}s; it was stopped with all its processes",
                hint="raise timeouts.build_s",
            ) from None
        if done.returncode != 0:
            raise _explained(f"{done.stdout}\n{done.stderr}", recipe)
        if recipe.files:
            with_files = tmp / "rootfs.tar"
            add_files(built, recipe.files, with_files)
            built = with_files
        os.replace(built, out)
    return out


def _explained(text: str, recipe: Recipe) -> BuildError:
    """mmdebstrap's failure in its own words: which package, or which suite, does not exist."""
    missing = re.findall(r"E: Unable to locate package (\S+)", text)
    if missing:
        return BuildError(
            f"mmdebstrap failed: Debian {recipe.suite} has no package {', '.join(missing)}",
            hint="check workload.build.packages (apt-cache policy NAME shows what exists)",
        )
    if re.search(r"does not have a Release file|no longer has a Release file", text):
        return BuildError(
            f"mmdebstrap failed: the mirror has no suite {recipe.suite!r}",
            hint="workload.build.suite must be a Debian suite, e.g. bookworm",
        )
    errors = [line for line in text.splitlines() if line.lstrip().startswith("E:")][-6:]
    detail = "\n".join(errors) or _tail(text)
    return BuildError(
        f"mmdebstrap failed for {recipe.suite} with packages {', '.join(recipe.packages)}:\n{detail}",
        hint="check the package names (apt-cache policy NAME) and the host's apt sources",
    )


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in kept)
