"""`explorer doctor` against the real host, checked with the engines' own clients."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from explorer.errors import EXIT_UNAVAILABLE
from tests.conftest import backend_or_skip, run_explorer

pytestmark = [pytest.mark.docker, pytest.mark.libvirt]


def test_doctor_reports_the_engine_versions_the_clients_see(docker_backend, libvirt_backend):
    result = run_explorer("doctor", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    server = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert f"Docker {server}" in result.stdout
    virsh = subprocess.run(
        ["virsh", "-c", "qemu:///system", "version"], capture_output=True, text=True, check=True
    ).stdout
    libvirt_line = next(line for line in virsh.splitlines() if "libvirt" in line and "library" in line.lower())
    assert f"libvirt {libvirt_line.split()[-1]}" in result.stdout
    kvm_row = next(line for line in result.stdout.splitlines() if line.startswith("KVM"))
    assert ("KVM works" in kvm_row) != ("TCG" in kvm_row)  # one verdict, proven either way


def test_doctor_exits_3_with_the_fix_when_the_engine_is_down(tmp_path):
    result = run_explorer("doctor", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}, timeout=120)
    assert result.returncode == EXIT_UNAVAILABLE
    assert "MISSING" in result.stdout and "scripts/setup-host" in result.stdout


def test_doctor_warns_of_a_podman_namespace_nothing_holds_and_clean_spares_what_explorer_did_not_make():
    """A namespace named as Podman names them, with no process and no container (`ip netns add`,
    not explorer): doctor warns and names it; `explorer clean` leaves it, not being explorer's."""
    backend_or_skip("userns")
    name = "netns-" + str(uuid.uuid4())
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        result = run_explorer("doctor", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr  # a warning, not a failure
        row = next(line for line in result.stdout.splitlines() if line.startswith("Podman network namespaces"))
        assert "warning" in row and f"/run/netns/{name}" in row
        cleaned = run_explorer("clean")
        assert cleaned.returncode == 0, cleaned.stderr
        assert name not in cleaned.stdout and os.path.exists(f"/run/netns/{name}")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    result = run_explorer("doctor", timeout=120)
    row = next(line for line in result.stdout.splitlines() if line.startswith("Podman network namespaces"))
    assert " ok " in row and "none left behind" in row
