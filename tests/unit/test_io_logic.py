"""The standard I/O load's pure logic, read off what fio 3.33 really printed and sent on this host
(fixtures/load/fio-*.json, fixtures/readiness/fio-*.hex): fio's readiness probe, the job file,
the parsing of a round, the O_DIRECT fallback's decision, the storage paths each engine names
from its own settings, and the I/O table's rows and notes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from explorer import scenario
from explorer.engines import storage
from explorer.engines.snapshot import restored_xml
from explorer.errors import ScenarioError
from explorer.load import client_for, io, io_init
from explorer.load.rounds import summarize
from explorer.loadspec import LoadSpec
from explorer.output import compare, io_table, report
from explorer.readiness import ReadySpec
from explorer.readiness import fio as fio_ready
from explorer.result import Result
from tests.servers import server
from tests.unit.documents import typed

FIXTURES = Path(__file__).parent / "fixtures"
ROUND = (FIXTURES / "load" / "fio-round.json").read_text()
REFUSED = (FIXTURES / "load" / "fio-init-refused.json").read_text()
PROBE_REPLY = bytes.fromhex((FIXTURES / "readiness" / "fio-probe-reply.hex").read_text())
MISMATCH_REPLY = bytes.fromhex((FIXTURES / "readiness" / "fio-version-mismatch.hex").read_text())
# the first 24 bytes fio 3.33's own client sent (captured): version 97, opcode 10 (probe), 136 bytes
FIO_CLIENT_HEADER = bytes.fromhex("61000a000000000050aa4f939e5500008800000058ee9aec")


# ---- readiness: fio's client probe -------------------------------------------------------------


def replying(reply: bytes):
    def handler(conn):
        head = conn.recv(24)
        if len(head) == 24:
            conn.recv(int.from_bytes(head[16:20], "little"))
        conn.sendall(reply)

    return handler


def test_the_probe_is_framed_as_fios_own_client_frames_it():
    sent = fio_ready.command(97, fio_ready.CMD_PROBE, fio_ready.probe_payload("127.0.0.1"))
    assert sent[:4] == FIO_CLIENT_HEADER[:4] and sent[16:20] == FIO_CLIENT_HEADER[16:20]  # version, opcode, length
    assert fio_ready.crc16(FIO_CLIENT_HEADER[:20]) == int.from_bytes(FIO_CLIENT_HEADER[20:22], "little")
    assert len(sent) == 24 + 136


def test_a_real_probe_reply_is_ready_and_says_which_fio_answered():
    strategy = ReadySpec.from_data("fio").strategy()
    with server(replying(PROBE_REPLY)) as port:
        assert strategy.attempt("127.0.0.1", port)
    assert strategy.last_seen == "a probe reply: fio-3.33 on vm (2 CPUs)"


def test_a_server_of_another_protocol_version_is_not_ready_and_says_which():
    strategy = ReadySpec.from_data({"fio": {"protocol": 96}}).strategy()
    with server(replying(MISMATCH_REPLY)) as port:
        assert not strategy.attempt("127.0.0.1", port)
    assert strategy.last_seen == "fio's server speaks protocol 97, not 96: 'fio: bad server cmd version 96'"


@pytest.mark.parametrize(
    ("handler", "seen"),
    [
        (lambda conn: None, "connection closed"),  # a proxy with nothing behind it
        (replying(b"+PONG\r\n" + b"\0" * 40), "not a fio reply (its header checksum does not match)"),
        (replying(PROBE_REPLY[:24] + b"\0" * 112), "a fio reply whose payload is cut short or damaged"),
    ],
)
def test_no_fio_behind_the_port_is_not_ready(handler, seen):
    strategy = ReadySpec.from_data("fio").strategy()
    with server(handler) as port:
        assert not strategy.attempt("127.0.0.1", port)
    assert seen in strategy.last_seen


# ---- the job file -----------------------------------------------------------------------------


def test_the_job_file_runs_the_four_jobs_in_a_round_with_o_direct():
    text = io.job_file(2.0, 256, True)
    assert "ioengine=psync\n" in text and "direct=1\n" in text and "size=256m\n" in text
    assert "time_based=1\n" in text and "runtime=500ms\n" in text and "stonewall\n" in text
    assert [line for line in text.splitlines() if line.startswith("[")] == [
        "[global]",
        "[randread-4k]",
        "[randwrite-4k]",
        "[read-1m]",
        "[write-1m]",
    ]
    assert "rw=randread\nbs=4k" in text and "rw=write\nbs=1m" in text
    assert "direct=0\n" in io.job_file(2.0, 256, False)
    assert "runtime=100ms\n" in io.job_file(0.1, 256, True)  # never shorter than fio can time


def test_the_init_job_lays_the_file_out_and_opens_it_once_with_o_direct():
    text = io.init_job_file(256)
    assert "size=256m\n" in text and "direct=1\n" in text and "io_size=4k\n" in text
    assert "time_based" not in text


def test_job_files_are_saved_once_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    first = io.saved(io.job_file(2.0, 256, True))
    assert first == io.saved(io.job_file(2.0, 256, True)) and first.read_text() == io.job_file(2.0, 256, True)
    assert io.saved(io.job_file(1.0, 256, True)) != first


def test_the_client_argv_is_fios_client_against_the_port(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    argv = io.Fio().argv(["/usr/bin/fio"], "127.0.0.1", 32768, 2.0)
    assert argv[:2] == ["/usr/bin/fio", "--client=127.0.0.1,32768"] and argv[-1] == "--output-format=json"
    assert Path(argv[2]).read_text() == io.job_file(2.0, 256, True)
    init = io.Fio().init_argv(["/usr/bin/fio"], "127.0.0.1", 32768)
    assert init[1:4] == ["-m", "explorer.load.io_init", "--"] and Path(init[6]).read_text() == io.init_job_file(256)


# ---- a round's figures ------------------------------------------------------------------------


def test_a_round_gives_each_jobs_iops_bandwidth_and_clat_percentiles():
    got = io.Fio().parse(ROUND)
    jobs = got["detail"]["jobs"]
    assert list(jobs) == ["randread-4k", "randwrite-4k", "read-1m", "write-1m"]
    assert jobs["randread-4k"] == {
        "rw": "randread",
        "bs": "4k",
        "ios": 8006,
        "runtime_ms": 501,
        "iops": 15980.03992,
        "bw_kib_s": 63920,
        "p50_ms": pytest.approx(0.057088),
        "p99_ms": pytest.approx(0.207872),
    }
    assert jobs["write-1m"]["ios"] == 839 and jobs["write-1m"]["bw_kib_s"] == 1714842  # the write side of a write job
    assert got["ops"] == 8006 + 11696 + 660 + 839 and got["seconds"] == pytest.approx(2.004)
    assert got["p50_ms"] is None and got["p99_ms"] is None  # one latency over 4 KiB and 1 MiB I/Os says nothing
    assert got["detail"]["direct"] is True


def test_a_failed_job_or_a_missing_one_is_an_error_not_a_zero():
    doc = io.results(ROUND)
    doc["client_stats"][1]["error"] = 28
    with pytest.raises(ValueError, match=r"randwrite-4k \(error 28\)"):
        io.Fio().parse(json.dumps(doc))
    doc["client_stats"] = doc["client_stats"][:2]
    with pytest.raises(ValueError, match="no job read-1m, write-1m"):
        io.Fio().parse(json.dumps(doc))
    with pytest.raises(ValueError, match="printed no JSON"):
        io.Fio().parse("fio: connect: Connection refused\n")


# ---- O_DIRECT refused: buffered, and said -------------------------------------------------------


def test_a_refusal_is_einval_on_every_job_with_fios_own_words():
    why = io.refusal(REFUSED, "")
    assert why is not None and why.startswith("EINVAL (22) opening its file with O_DIRECT")
    assert "destination does not support O_DIRECT" in why


def test_success_or_another_error_is_no_refusal():
    assert io.refusal(ROUND, "") is None
    doc = io.results(REFUSED)
    doc["client_stats"][0]["error"] = 28  # ENOSPC: a full disk is a failure, not a fallback
    assert io.refusal(json.dumps(doc), "fio: destination does not support O_DIRECT") is None
    assert io.refusal("no JSON at all", "O_DIRECT") is None


def fake_fio(tmp_path: Path, out: str, code: int) -> list[str]:
    script = tmp_path / "fake_fio.py"
    (tmp_path / "out.txt").write_text(out)
    script.write_text(f"import sys; sys.stdout.write(open({str(tmp_path / 'out.txt')!r}).read()); sys.exit({code})\n")
    return [sys.executable, str(script)]


@pytest.mark.parametrize(
    ("out", "code", "answer", "exit_code"),
    [
        (ROUND, 0, {"direct": True}, 0),
        (REFUSED, 1, {"direct": False}, 0),
        ("fio: connect: Connection refused\n", 1, None, 1),
    ],
)
def test_the_init_wrapper_turns_only_a_refusal_into_an_answer(tmp_path, out, code, answer, exit_code):
    done = subprocess.run(
        [sys.executable, "-m", "explorer.load.io_init", "--", *fake_fio(tmp_path, out, code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == exit_code, done.stderr
    if answer is None:
        assert "Connection refused" in done.stderr
    else:
        assert {k: v for k, v in json.loads(done.stdout).items() if k != "refused"} == answer
    assert io_init.main([]) == 2


def test_a_refusing_side_runs_the_same_jobs_buffered_and_the_result_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    client = io.Fio().initialised(json.dumps({"direct": False, "refused": "EINVAL (22) ..."}))
    assert client.direct is False
    assert "direct=0\n" in Path(client.argv(["fio"], "127.0.0.1", 1, 2.0)[2]).read_text()
    recorded = client.as_run(2.0)["io"]
    assert recorded["direct"] is False and recorded["direct_refused"] == "EINVAL (22) ..."
    assert "page cache" in recorded["page_cache_effect"] and "direct=0" in recorded["job_file"]
    assert io.Fio().initialised(json.dumps({"direct": True})) == io.Fio()
    assert io.Fio().as_run(2.0)["io"]["page_cache_effect"] is None


# ---- the scenario -------------------------------------------------------------------------------


def test_the_fio_scenario_loads_with_its_readiness_and_the_io_load():
    fio = scenario.load("fio")
    assert fio.workload.ready.kind == "fio" and fio.load == LoadSpec("fio", (("size_mib", 256), ("direct", True)))
    assert fio.workload.recipe.packages == ("fio",) and fio.workload.recipe.workdir == "/var/lib/explorer-fio"
    assert fio.workload.recipe.command == ("fio", "--server=ip:0.0.0.0,8765")
    assert fio.to_dict()["ready_warning"] is None  # a protocol-level check, not tcp


def test_the_io_load_parameters_are_validated():
    data: dict[str, Any] = {"name": "f", "workload": {"image": "x", "port": 8765, "processes": ["fio"], "ready": "fio"}}
    with pytest.raises(ScenarioError, match=r"load: \{.fio.: \{.size_mib.: 8\}\} is not valid"):
        scenario.from_dict({**data, "load": {"fio": {"size_mib": 8}}})
    assert client_for(scenario.from_dict({**data, "load": {"fio": {"direct": False}}}).load).direct is False


# ---- storage paths, from each engine's own settings -------------------------------------------------


def test_runc_names_overlayfs_on_the_hosts_filesystem_from_docker_info():
    info = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]], "DockerRootDir": "/var/lib/docker"}
    got = storage.overlay_storage(info)
    assert got["path"] == "overlayfs on the host's filesystem"
    assert "extfs" in got["detail"] and got["driver"] == "overlay2"


def test_gvisor_says_whether_its_overlay_is_in_memory_on_the_host_or_absent():
    flags = (FIXTURES / "runsc-flags-20221219.txt").read_text()
    default = storage.gvisor_storage(["--platform=ptrace", "--network=host"], flags)  # this host's daemon.json
    assert default["overlay"] == "none" and default["path"].startswith("through the gofer")
    assert "shows no default" in default["read_from"]
    memory = storage.gvisor_storage(["--overlay2=root:memory"], flags)
    assert memory["overlay"] == "in memory" and "runtimeArgs" in memory["read_from"]
    assert storage.gvisor_storage(["--overlay"], flags)["overlay"] == "in memory"
    assert storage.gvisor_storage(["--overlay2=root:/var/tmp/g"], flags)["overlay"] == "on the host (/var/tmp/g)"
    newer = "  -overlay2 value\n    \twrap mounts with overlayfs. (default root:memory)\n  -panic-log string\n"
    assert storage.gvisor_storage([], newer)["overlay"] == "in memory"
    assert storage.gvisor_storage([], None)["overlay"] == "unknown"  # never guessed


def test_a_vm_names_virtio_blk_qcow2_and_the_cache_mode_of_its_domain_xml():
    xml = (FIXTURES / "saved-domain.xml").read_text()
    got = storage.disk_storage(xml, "ext4")
    assert got["path"] == "virtio-blk on a qcow2 file, libvirt cache mode default, ext4 in the guest"
    assert "writeback" in got["cache_mode_means"] and got["file"].endswith("overlay.qcow2")
    none = storage.disk_storage(xml.replace("<driver name='qemu' type='qcow2'/>", "<driver cache='none'/>"), "ext4")
    assert none["cache_mode"] == "none" and none["path"].startswith("virtio-blk on a raw file, libvirt cache mode none")


# ---- the I/O table ----------------------------------------------------------------------------------


def load_of(parsed: dict[str, Any], scale: float, **extra: Any) -> dict[str, Any]:
    jobs = {name: {**job, "iops": job["iops"] * scale} for name, job in parsed["detail"]["jobs"].items()}
    rounds = [{**parsed, "ops_s": parsed["ops_s"] * scale, "detail": {**parsed["detail"], "jobs": jobs}}] * 3
    return {
        "status": "ok",
        "summary": summarize(rounds),
        "kind": "fio",
        "params": {"size_mib": 256, "direct": True},
        "rounds": rounds,
        "traced": {
            "available": True,
            "method": "perf stat",
            "per_op": 3.25,
            "ops": 100,
            "distinct": 2,
            "syscalls": {"pread64": 200},
        },
        "io": io.Fio().as_run(2.0)["io"],
        **extra,
    }


def io_raw() -> dict[str, Any]:
    parsed = io.Fio().parse(ROUND)
    buffered = load_of(parsed, 0.1, note="under TCG ...")
    buffered["io"] = io.Fio(direct=False, refused="EINVAL (22) opening its file with O_DIRECT").as_run(2.0)["io"]
    vm_storage = storage.disk_storage((FIXTURES / "saved-domain.xml").read_text(), "ext4")
    return {
        "schema": "explorer.result/2",
        "host": {"hostname": "h", "kernel_release": "6", "cpu_cores": 2},
        "scenario": {"name": "fio", "load": {"fio": {"size_mib": 256, "direct": True}}},
        "load": {
            "settings": {"seconds_per_round": 2.0, "rounds": 3, "traced_round": True},
            "native": load_of(parsed, 1.0, storage={"path": "the host's filesystem (ext4 at /), no layer between"}),
        },
        "sides": {
            "runc": {
                "name": "runc",
                "title": "runc container",
                "kind": "container",
                "engine": {"storage": storage.overlay_storage({"Driver": "overlay2"})},
                "load": load_of(parsed, 0.5),
            },
            "microvm": {
                "name": "microvm",
                "title": "microVM",
                "kind": "vm",
                "target": {"storage": vm_storage},
                "load": buffered,
            },
            "gvisor": {
                "name": "gvisor",
                "title": "gVisor container",
                "kind": "container",
                "load": {"status": "failed", "reason": "x"},
            },
        },
    }


def io_result() -> Result:
    return typed(io_raw())


def test_the_io_table_has_a_native_row_and_each_sides_storage_path_and_ratio():
    headers, rows = io_table.io_table(io_result())
    assert headers[:4] == ["side", "storage path", "job", "O_DIRECT"]
    assert [row[0] for row in rows[:5]] == ["native process", "", "", "", "runc container"]
    assert rows[0][1].startswith("the host's filesystem") and rows[0][5] == "-"
    assert rows[4][1] == "overlayfs on the host's filesystem" and rows[4][5] == "0.50x" and rows[4][3] == "yes"
    assert rows[4][4].startswith("7,990\n")  # 15,980 IOPS at half
    assert rows[8][0] == "microVM (TCG)" and rows[8][1].startswith("virtio-blk on a qcow2 file, libvirt cache mode")
    assert rows[8][3] == "no: buffered [1]" and rows[8][5] == "0.10x" and rows[8][8] == "3.25\n(all jobs)"
    assert rows[12][:4] == ["gVisor container", "not recorded", "-", "failed [2]"]


def test_the_io_notes_name_the_job_the_page_cache_and_why_a_row_is_empty():
    notes = io_table.io_notes(io_result())
    assert "each a quarter of a 2 s round" in notes[0] and "256 MiB file" in notes[0]
    assert any(n.startswith("microVM: cache mode default: none set in the domain XML") for n in notes)
    assert notes[-2].startswith("[1] microVM: O_DIRECT refused (EINVAL (22)") and "page cache" in notes[-2]
    assert notes[-1] == "[2] gVisor container: failed: x"


def test_the_report_and_compare_show_the_io_table():
    result = io_result()
    text = report.render(result, "markdown")
    assert f"## {io_table.IO_HEADING}" in text and "4 KiB random read" in text
    no_load = typed({**io_raw(), "scenario": {"name": "redis"}, "load": None, "sides": {}})
    assert io_table.IO_HEADING not in report.render(no_load)
    rows = compare.compare_table([("a", result), ("b", result)])[1]
    found = {row[0]: row[1:] for row in rows}
    assert found["native process: IOPS, 4 KiB random read"] == ["15,980", "15,980"]
    assert found["microVM: IOPS, 1 MiB sequential write"] == ["167 (0.10x native), buffered"] * 2


def test_a_restored_vm_names_the_disk_of_the_xml_it_was_restored_with(tmp_path):
    xml = restored_xml(
        (FIXTURES / "saved-domain.xml").read_text(), 40000, tmp_path / "overlay.qcow2", tmp_path / "console.log", {}
    )
    got = storage.disk_storage(xml, "ext4")
    assert got["path"] == "virtio-blk on a qcow2 file, libvirt cache mode default, ext4 in the guest"
    assert got["file"] == str(tmp_path / "overlay.qcow2")
