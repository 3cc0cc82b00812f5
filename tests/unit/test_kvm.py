"""The KVM verdict's cache and boot-test plumbing, with fakes: no real QEMU runs here."""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import time
from pathlib import Path

import psutil
import pytest

from explorer import kvm
from tests.conftest import cpio_members


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    """A cache in tmp_path, a fake kernel and QEMU version, and a boot test that counts calls."""
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not really a kernel")
    calls: list[tuple[Path, float]] = []
    state = {"usable": False, "qemu": "QEMU emulator version 7.2.22"}

    def boot_test(path: Path, timeout_s: float, accel: str = "kvm") -> tuple[bool, str]:
        calls.append((path, timeout_s))
        return state["usable"], "fake boot test"

    monkeypatch.setattr(kvm, "_quick_refusal", lambda: None)
    monkeypatch.setattr(kvm, "qemu_version", lambda: state["qemu"])
    monkeypatch.setattr(kvm, "boot_test", boot_test)
    return {"kernel": kernel, "calls": calls, "state": state, "cache": tmp_path / "cache" / "kvm"}


def test_first_call_boot_tests_and_the_second_reads_the_cache(fake_host):
    first = kvm.kvm_usable(timeout_s=3, kernel=fake_host["kernel"])
    second = kvm.kvm_usable(timeout_s=3, kernel=fake_host["kernel"])
    assert (first.usable, first.cached) == (False, False)
    assert (second.usable, second.cached) == (False, True)
    assert second.reason == first.reason == "fake boot test"
    assert second.checked_at == first.checked_at
    assert fake_host["calls"] == [(fake_host["kernel"], 3)]


def test_cache_is_keyed_by_host_kernel_boot_id_qemu_and_guest_kernel(fake_host):
    kvm.kvm_usable(kernel=fake_host["kernel"])
    (entry,) = fake_host["cache"].glob("*.json")
    key = json.loads(entry.read_text())["key"]
    assert key["host_kernel"] == os.uname().release
    assert key["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert key["qemu"] == "QEMU emulator version 7.2.22"
    st = fake_host["kernel"].stat()
    assert key["guest_kernel"] == f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def test_a_new_qemu_or_guest_kernel_tests_again(fake_host):
    kvm.kvm_usable(kernel=fake_host["kernel"])
    fake_host["state"]["qemu"] = "QEMU emulator version 8.0.0"
    fake_host["state"]["usable"] = True
    assert kvm.kvm_usable(kernel=fake_host["kernel"]).usable is True
    fake_host["kernel"].write_bytes(b"another kernel")
    kvm.kvm_usable(kernel=fake_host["kernel"])
    assert len(fake_host["calls"]) == 3


def test_a_changed_boot_id_in_the_cache_is_not_trusted(fake_host):
    kvm.kvm_usable(kernel=fake_host["kernel"])
    (entry,) = fake_host["cache"].glob("*.json")
    data = json.loads(entry.read_text())
    data["key"]["boot_id"] = "00000000-0000-0000-0000-000000000000"
    data["verdict"]["usable"] = True
    entry.write_text(json.dumps(data))
    verdict = kvm.kvm_usable(kernel=fake_host["kernel"])
    assert (verdict.usable, verdict.cached) == (False, False)
    assert len(fake_host["calls"]) == 2


def test_refresh_and_a_corrupt_cache_test_again(fake_host):
    kvm.kvm_usable(kernel=fake_host["kernel"])
    kvm.kvm_usable(kernel=fake_host["kernel"], refresh=True)
    (entry,) = fake_host["cache"].glob("*.json")
    entry.write_text("{not json")
    assert kvm.kvm_usable(kernel=fake_host["kernel"]).cached is False
    assert len(fake_host["calls"]) == 3


def test_without_a_kernel_the_answer_is_tcg_and_nothing_is_cached(fake_host, monkeypatch):
    monkeypatch.setattr(kvm, "find_kernel", lambda: None)
    verdict = kvm.kvm_usable()
    assert verdict.usable is False and "no guest kernel" in verdict.reason
    assert fake_host["calls"] == [] and not list(fake_host["cache"].glob("*.json"))


def test_a_quick_refusal_needs_no_boot_test(fake_host, monkeypatch):
    monkeypatch.setattr(kvm, "_quick_refusal", lambda: "/dev/kvm cannot be opened (No such file)")
    verdict = kvm.kvm_usable(kernel=fake_host["kernel"])
    assert (verdict.usable, verdict.reason) == (False, "/dev/kvm cannot be opened (No such file)")
    assert fake_host["calls"] == []


def test_the_cached_kernel_is_found(fake_host):
    directory = kvm.cache_dir("kernel") / "6.1.0-test"
    directory.mkdir(parents=True)
    (directory / "vmlinuz").write_bytes(b"k")
    assert kvm.find_kernel() == directory / "vmlinuz"


def test_kvm_device_access_by_mode_bits(tmp_path):
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    me = os.getuid()
    for mode, uid, gid, expected in [
        (0o600, 4242, 4242, False),
        (0o660, 4242, os.stat(device).st_gid, True),
        (0o666, 4242, 4242, True),
        (0o600, 0, 0, True),
    ]:
        device.chmod(mode)
        assert kvm.device_usable_by(uid, gid, str(device)) is expected, (oct(mode), uid, gid, me)
    assert kvm.device_usable_by(4242, 4242, str(tmp_path / "absent")) is True


# The boot test's process handling, against fake QEMU scripts.


def _fake_qemu(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!{sys.executable}\nimport os, sys, time, subprocess\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def fake_images(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    return kernel


def test_boot_test_passes_when_the_marker_is_printed(tmp_path, fake_images, monkeypatch):
    monkeypatch.setattr(
        kvm,
        "QEMU",
        _fake_qemu(tmp_path, "print('[ 0.1] boot'); print('EXPLORER-KVM-PROBE-OK', flush=True); time.sleep(60)"),
    )
    started = time.monotonic()
    usable, reason = kvm.boot_test(fake_images, timeout_s=20)
    assert usable and "reached userspace" in reason
    assert time.monotonic() - started < 10  # no waiting for the deadline once the marker is seen


def test_boot_test_kills_a_hung_guest_and_its_children_at_the_deadline(tmp_path, fake_images, monkeypatch):
    pid_file = tmp_path / "child.pid"
    body = (
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('SeaBIOS', flush=True); time.sleep(600)"
    )
    monkeypatch.setattr(kvm, "QEMU", _fake_qemu(tmp_path, body))
    started = time.monotonic()
    usable, reason = kvm.boot_test(fake_images, timeout_s=2)
    assert not usable and "did not reach userspace within 2s" in reason and "SeaBIOS" in reason
    assert time.monotonic() - started < 6
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the fake QEMU's child survived the boot test"
        time.sleep(0.05)


def test_boot_test_reports_a_qemu_that_exits(tmp_path, fake_images, monkeypatch):
    body = "print('qemu-system-x86_64: Could not access KVM kernel module: Permission denied'); sys.exit(1)"
    monkeypatch.setattr(kvm, "QEMU", _fake_qemu(tmp_path, body))
    usable, reason = kvm.boot_test(fake_images, timeout_s=20)
    assert not usable and "exited with 1" in reason and "Permission denied" in reason


def test_the_probe_initramfs_holds_console_and_a_static_init(fake_images):
    entries = cpio_members(kvm.probe_initramfs().read_bytes())
    assert stat.S_ISCHR(entries["dev/console"][0]) and entries["dev/console"][2:] == (5, 1)
    mode, elf, *_ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111
    assert elf[:4] == b"\x7fELF" and elf[4] == 2  # 64-bit
    (entry,) = struct.unpack_from("<Q", elf, 24)
    assert entry == kvm.LOAD_ADDRESS + 64 + 56 and kvm.MARKER in elf
