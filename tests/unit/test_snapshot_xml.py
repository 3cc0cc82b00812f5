"""The snapshot side's restore XML: the saved domain (a real one, saved by libvirt 9.0 here)
changed for one instance in exactly what libvirt lets a restore change, nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("libvirt")
from explorer.engines.snapshot import restored_xml
from explorer.errors import BackendError

SAVED = (Path(__file__).parent / "fixtures" / "saved-domain.xml").read_text()
LABELS = {"run": "abcd1234", "scenario": "redis", "index": 3, "pid": 99, "workdir": "/tmp/explorer-vm-x"}


def test_the_instance_gets_its_port_overlay_console_and_labels():
    out = restored_xml(SAVED, 40123, Path("/tmp/w/overlay.qcow2"), Path("/tmp/w/console.log"), LABELS)
    assert "hostfwd=tcp:127.0.0.1:40123-:6379" in out and out.count("hostfwd=") == 1
    assert re.search(r"<source file=[\"']/tmp/w/overlay.qcow2[\"']", out)
    assert len(re.findall(r"<source path=[\"']/tmp/w/console.log[\"']", out)) == 2  # the serial and its console
    assert 'run="abcd1234"' in out and 'index="3"' in out and 'pid="99"' in out and 'pid="4242"' not in out


def test_what_a_restore_cannot_change_is_kept():
    out = restored_xml(SAVED, 40123, Path("/tmp/w/overlay.qcow2"), Path("/tmp/w/console.log"), LABELS)
    for element in ("name", "uuid", "memory", "kernel", "initrd"):
        assert re.findall(rf"<{element}[^>]*>[^<]*</{element}>", out) == re.findall(
            rf"<{element}[^>]*>[^<]*</{element}>", SAVED
        ), element


def test_an_xml_of_another_shape_is_refused_not_guessed():
    with pytest.raises(BackendError, match="not the shape explorer saved"):
        restored_xml(SAVED.replace("hostfwd=", "hostfwd_gone="), 1, Path("/o"), Path("/c"), LABELS)
