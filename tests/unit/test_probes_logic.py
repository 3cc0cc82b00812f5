"""Pure logic of probes and report: capability decoding, startup statistics, rendering."""

from __future__ import annotations

import json
import os

from explorer.output import report
from explorer.probes import hostproc, startup
from tests.unit.documents import typed


def test_capabilities_decode_docker_default_set():
    # Docker's default bounding set, as CapEff of a root process in a default container.
    caps = hostproc.capabilities("00000000a80425fb")
    assert caps == [
        "chown",
        "dac_override",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "net_bind_service",
        "net_raw",
        "sys_chroot",
        "mknod",
        "audit_write",
        "setfcap",
    ]
    assert hostproc.capabilities("0") == []


def test_own_process_facts():
    me = hostproc.describe(os.getpid())
    assert me["host_pid"] == os.getpid() and me["rss_bytes"] >= me["uss_bytes"] > 0
    assert me["pid_inside"] is not None
    assert me["parents"] and me["parents"][0]["pid"] == os.getppid()


def test_startup_summary_and_relative_marks():
    repeats = [
        {"created_s": 0.1, "ready_s": 0.5},
        {"created_s": 0.2, "ready_s": 0.3},
        {"created_s": 0.1, "ready_s": 0.4},
    ]
    s = startup.summarize(repeats)
    assert s["ready_s"]["median"] == 0.4 and s["ready_s"]["min"] == 0.3 and s["ready_s"]["n"] == 3
    assert startup.relative({"ready": 12.5, "created": 10.25}, 10.0, ("created", "ready")) == {
        "created_s": 0.25,
        "ready_s": 2.5,
    }
    assert startup.summarize([]) == {}


def test_human_units():
    assert report.human_bytes(117_000_000) == "111.6 MiB"
    assert report.human_bytes(None) == "-"
    assert report.seconds(0.2345) == "234 ms" and report.seconds(12.345) == "12.35 s"


def _container_result() -> dict:
    proc = {
        "host_pid": 4242,
        "pid_inside": 1,
        "name": "redis-server",
        "cmdline": "redis-server *:6379",
        "user": "messagebus",
        "uid": 100,
        "rss_bytes": 12 << 20,
        "pss_bytes": 11 << 20,
        "parents": [{"pid": 4200, "name": "containerd-shim-runc-v2"}],
    }
    return {
        "schema": "explorer.result/1",
        "host": {"hostname": "h", "kernel_release": "6.1.0", "cpu_cores": 2},
        "scenario": {"name": "redis"},
        "sides": {
            "container": {
                "backend": "docker",
                "accel": "native",
                "engine": {"engine_version": "20.10", "default_runtime": "runc"},
                "image": {"ref": "redis:7", "image_bytes": 117_000_000, "total_bytes": 117_000_000},
                "visibility": {
                    "process_names": ["redis-server"],
                    "visible_on_host": True,
                    "workload_processes": [proc],
                    "runtime_processes": [],
                    "inside": {"available": True, "user_process_count": 1, "kernel_thread_count": 0},
                },
                "kernel": {
                    "available": True,
                    "host_release": "6.1.0",
                    "host_boot_id": "b",
                    "guest_release": "6.1.0",
                    "shared": True,
                    "same_boot_id": True,
                },
                "startup": {
                    "milestones": ["ready"],
                    "repeats": [{"ready_s": 0.3}, {"ready_s": 0.4}],
                    "summary": startup.summarize([{"ready_s": 0.3}, {"ready_s": 0.4}]),
                },
                "memory": {
                    "workload": {"rss_bytes": 12 << 20, "pss_bytes": 11 << 20, "processes": 1},
                    "runtime": {"rss_bytes": 13 << 20, "pss_bytes": 12 << 20, "processes": 1},
                    "host_total": {"rss_bytes": 25 << 20, "pss_bytes": 23 << 20},
                },
                "isolation": {
                    "available": True,
                    "subject": "workload",
                    "namespaces_differing": ["pid", "net"],
                    "capability_count": 14,
                    "seccomp": "filter",
                },
            }
        },
    }


def test_render_every_format():
    result = typed(_container_result())
    table = report.render(result, "table", detail=True)
    assert "redis-server 4242 (pid 1 inside)" in table and "111.6 MiB" in table and "350 ms median" in table
    markdown = report.render(result, "markdown")
    assert markdown.startswith("# explorer: redis") and "| workload in host's ps -e" in markdown
    shown = json.loads(report.render(result, "json"))
    assert shown == json.loads(result.model_dump_json(by_alias=True))
    assert shown["upgraded_from"] == "explorer.result/1" and shown["sides"]["container"]["name"] == "container"


def test_signals_during_cleanup_wait_until_it_is_done():
    import signal

    import pytest

    from explorer.interrupts import deferred as interrupts_deferred

    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        steps.append("cleanup finished")
    assert steps == ["cleanup finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
