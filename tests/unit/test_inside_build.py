"""The inside probe's build: gcc -O1 -static into explorer's cache, named by the content hash of
its source and flags; a second build is a lookup; a host without gcc or libc.a gets a BuildError
that says what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from explorer.errors import BuildError
from explorer.probes.inside import build


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _no_compiler_here(monkeypatch, tmp_path) -> None:
    """A PATH with nothing on it: any attempt to run gcc would fail."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed (scripts/setup-host installs it)")
def test_a_second_build_is_a_cache_hit_by_content_hash(private_cache, monkeypatch, tmp_path):
    first = build.build()
    assert first.parent == private_cache / "inside" and first.name.endswith(build.content_key(build.source_text()))
    # a static executable: the file(1)-independent check is the ELF header and no interpreter segment
    data = first.read_bytes()
    assert data[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in data and b"/lib/ld-linux" not in data
    assert 300_000 < first.stat().st_size < 3_000_000
    built_at = first.stat().st_mtime_ns
    _no_compiler_here(monkeypatch, tmp_path)  # a second build that tried to compile would now fail
    assert build.build() == first and first.stat().st_mtime_ns == built_at
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no leftover of the first build


def test_the_key_changes_with_the_source_and_with_the_flags():
    source = build.source_text()
    key = build.content_key(source)
    assert build.content_key(source) == key
    assert build.content_key(source + b"\n") != key
    assert build.content_key(source, (*build.FLAGS, "-DX")) != key
    assert build.content_key(source, tuple(f for f in build.FLAGS if f != "-static")) != key


def test_no_gcc_is_a_build_error_that_says_what_to_install(private_cache, monkeypatch, tmp_path):
    _no_compiler_here(monkeypatch, tmp_path)
    with pytest.raises(BuildError, match="gcc is not installed") as caught:
        build.build()
    assert caught.value.hint is not None and "libc6-dev" in caught.value.hint


def test_no_static_libc_is_a_build_error(private_cache, monkeypatch, tmp_path):
    """A gcc without libc.a echoes the bare name back for -print-file-name (as gcc does)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gcc"
    fake.write_text('#!/bin/sh\ncase "$1" in -print-file-name=*) echo "${1#-print-file-name=}";; *) exit 1;; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(BuildError, match=r"static C library \(libc\.a\) is missing"):
        build.build()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed (scripts/setup-host installs it)")
def test_a_source_that_does_not_compile_is_a_build_error_with_gcc_s_words(private_cache, monkeypatch):
    monkeypatch.setattr(build, "source_text", lambda: b"int main(void) { return undefined_thing; }\n")
    with pytest.raises(BuildError, match="undefined_thing"):
        build.build()
    assert not any((private_cache / "inside").glob("explorer-inside-*"))


def test_gcc_really_reports_a_missing_file_with_its_bare_name():
    """The check above rests on gcc's behaviour: a name it cannot find is echoed back as given."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    done = subprocess.run(
        [gcc, "-print-file-name=libexplorer-nonexistent.a"], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "libexplorer-nonexistent.a"
