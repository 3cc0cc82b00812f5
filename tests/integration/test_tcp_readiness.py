"""The weakest readiness, `tcp`, against the proxies that fool a bare connect: Docker's userland
proxy on a published port and QEMU's hostfwd, each with nothing listening behind it, and a VM
side whose network is not up yet (the timeline check must find every VM ready after its kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bare_qemu
from explorer import readiness
from explorer.dockerd import docker_client
from explorer.images.microvm.vm_image import VMImage


@pytest.mark.docker
def test_dockers_proxy_with_nothing_listening_is_not_ready(docker_backend, redis_artifact):
    """The container runs `sleep`, not redis: docker-proxy accepts on the published port, is
    refused behind it, and closes the connection."""
    container = docker_client().containers.run(
        redis_artifact.ref,
        ["sleep", "60"],
        ports={"6379/tcp": ("127.0.0.1", None)},
        detach=True,
        labels={"io.explorer.managed": "true"},
        remove=True,
    )
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["6379/tcp"][0]["HostPort"])
        check = readiness.STRATEGIES["tcp"]()
        assert not check.attempt("127.0.0.1", port)
        assert check.last_seen.startswith("accepted, then closed at once")
    finally:
        container.remove(force=True)


@pytest.mark.libvirt
@pytest.mark.slow
def test_qemus_hostfwd_with_nothing_listening_is_not_ready(libvirt_backend, redis_scenario):
    """A microVM whose redis answers: its forward to guest port 9, where nothing listens, is
    accepted by QEMU and then closed (the guest refused it); the workload's port is ready."""
    artifact = libvirt_backend.prepare(redis_scenario)
    paths = {key: Path(value) for key, value in artifact.paths.items()}
    image = VMImage(
        paths["disk"],
        paths["kernel"],
        paths["initramfs"],
        artifact.facts["cmdline"],
        artifact.facts["kernel_version"],
        {},
    )
    with bare_qemu.floor_vm(image, 6379, extra_ports={9: 0}, view=True) as vm:
        readiness.wait_ready("redis", "127.0.0.1", vm.host_port, vm.started + 120, between=vm.poll)
        check = readiness.STRATEGIES["tcp"]()
        assert not check.attempt("127.0.0.1", vm.extra_ports[9])
        assert check.last_seen.startswith("accepted, then closed at once")
        assert check.attempt("127.0.0.1", vm.host_port)


@pytest.mark.libvirt
@pytest.mark.vagrant
@pytest.mark.slow
def test_a_tcp_ready_vm_is_ready_after_its_kernel(vm_run):
    """`ready: tcp` on the microVM, the full-OS VM and the same VM through Vagrant (the session's
    one run of the VM sides, --strict: tests/integration/conftest.py): each VM's readiness comes
    after its kernel (and its network) in every start, and claim 4 is judged, never drawn from a
    timeline a proxy made up."""
    doc = vm_run["doc"]
    assert doc["scenario"]["ready"] == "tcp" and doc["scenario"]["name"] == "redis-tcp"
    for name in ("microvm", "fullvm", "vagrant"):
        startup = doc["sides"][name]["startup"]
        assert startup["timeline"]["ok"], startup["timeline"]
        for start in startup["repeats"]:
            assert start["kernel_s"] < start["network_s"] <= start["ready_s"], (name, start)
    verdicts = {c["id"]: c for c in doc["claims"]}["startup"]["sides"]
    assert verdicts["microvm"]["verdict"] == verdicts["fullvm"]["verdict"] == "reproduced"
