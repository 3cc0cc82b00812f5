"""Sizes with their methods (explorer/images/sizes.py), on small files made here: a real ext4
filesystem read by dumpe2fs, a `docker save`-shaped stream gzip'd layer by layer, and results
saved before sizes came in two figures."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile

from explorer import document
from explorer.images import sizes
from explorer.output import report
from tests.unit.documents import typed
from tests.unit.test_claims import recorded


def test_an_ext4_filesystem_in_use_as_its_superblock_says(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").write_bytes(os.urandom(512 * 1024))
    raw = tmp_path / "fs.raw"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-b", "4096", "-d", str(root), "-F", str(raw), "16M"], check=True)
    fs = sizes.filesystem_in_use(raw)
    assert fs["fs_block_bytes"] == 4096 and fs["fs_blocks"] == 4096
    assert 512 * 1024 < fs["fs_used_bytes"] < fs["fs_blocks"] * 4096  # the data, plus metadata and journal


def test_a_sparse_file_counts_what_it_holds(tmp_path):
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as handle:
        handle.write(b"x" * 4096)
        handle.seek(8 * 1024 * 1024)
        handle.write(b"y" * 4096)
    assert sparse.stat().st_size > 8 * 1024 * 1024 and sizes.file_bytes(sparse) < 64 * 1024


def docker_save(layers: list[bytes]) -> bytes:
    """A `docker save` stream in Docker 20.10's layout: LAYERID/layer.tar, a config, a manifest."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        members = {f"l{i}/layer.tar": data for i, data in enumerate(layers)}
        members |= {"abc.json": b'{"config": {}}', "manifest.json": b"[]", "repositories": b"{}"}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeImage:
    def __init__(self) -> None:
        self.id, self.attrs = "sha256:" + "0" * 64, {"Size": 3_000_000}


class FakeClient:
    def __init__(self, stream: bytes) -> None:
        self.api, self.stream = self, stream

    def get_image(self, image_id: str):
        return (self.stream[i : i + 65536] for i in range(0, len(self.stream), 65536))


def test_stored_is_each_layer_gzipped_plus_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    layers = [os.urandom(200_000) + b"\0" * 800_000, b"text " * 100_000]
    got = sizes.container_sizes(FakeClient(docker_save(layers)), FakeImage())
    by_gzip = sum(len(gzip.compress(layer, compresslevel=6)) for layer in layers)
    assert abs(got["stored_parts"]["layers (gzip)"] - by_gzip) <= 64  # gzip's header fields differ, no more
    assert got["stored_parts"]["config"] == len(b'{"config": {}}')
    assert got["content_bytes"] == 3_000_000 and got["layers_tar_bytes"] == sum(map(len, layers))
    cached = json.loads(next((tmp_path / "sizes").glob("*.json")).read_text())
    assert cached["layers"] == 2  # measured once per image id


def test_an_older_results_one_size_is_shown_as_what_it_was():
    result = document.upgraded(recorded("both"))
    container, vm = result["sides"]["container"]["image"], result["sides"]["vm"]["image"]
    assert container["content_bytes"] == container["image_bytes"] and "older explorer" in container["content_method"]
    assert "content_bytes" not in vm and vm["one_size_bytes"] == vm["total_bytes"]
    headers, rows = report.summary_table(typed(result))
    cell = dict(zip(headers[1:], next(r for r in rows if r[0] == "image size")[1:]))["VM"]
    assert cell == "135.4 MiB (saved by an older explorer: the qcow2 as stored + kernel + initramfs)"


def test_a_current_result_is_not_rewritten():
    result = document.upgraded(recorded("both"))
    assert result["schema"] == document.CURRENT and result["upgraded_from"] == "explorer.result/1"
    for side in result["sides"].values():
        side["image"].update(content_bytes=1, stored_bytes=1)
    assert document.upgraded(result) is result
