"""The full-OS image's pure parts: systemd quoting (checked against systemd's own parser,
`systemd-analyze verify`, where it is installed), the generated unit and files, the cache
key, the dpkg closure, guest paths kept inside the root, the box files and both
Vagrantfiles (`ruby -c`)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from explorer import scenario as scenarios
from explorer.errors import BuildError
from explorer.images import box as vagrant_box
from explorer.images.fullvm import build as fullos
from explorer.images.fullvm import guest_files as fullos_guest
from explorer.images.fullvm import systemd_unit as units
from explorer.images.rootfs import dpkg_db

ROOT = Path(__file__).resolve().parent.parent.parent
NASTY = [
    "plain",
    "two words",
    'dq"uote',
    "sq'uote",
    "100%",
    "%n",
    "$HOME",
    "${X}",
    "back\\slash",
    "",
    ";",
    "-dash",
    "a=b",
    "tab-less é ünïcode",
    "trailing\\",
]


def analyze(tmp_path: Path, body: str) -> str:
    """systemd's parsed view of a unit (the debug dump of `systemd-analyze verify`)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = tmp_path / "probe.service"
    unit.write_text(body)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
        timeout=60,
    )
    return done.stdout + done.stderr


def split_dump(line: str) -> list[str]:
    """Words of systemd's dumped command line: bare words, or double-quoted ones in which
    a backslash escapes the next character (systemd escapes `"`, `\\`, `$` and backquotes)."""
    words, pos = [], 0
    while pos < len(line):
        if line[pos] == " ":
            pos += 1
        elif line[pos] == '"':
            word, pos = [], pos + 1
            while line[pos] != '"':
                pos += line[pos] == "\\"
                word.append(line[pos])
                pos += 1
            words.append("".join(word))
            pos += 1
        else:
            end = line.find(" ", pos) % (len(line) + 1)
            words.append(line[pos:end])
            pos = end
    return words


def test_exec_words_survive_systemds_parser(tmp_path):
    text = analyze(tmp_path, f"[Service]\nExecStart={units.exec_line(['echo', *NASTY], '/bin/echo')}\n")
    (line,) = re.findall(r"Command Line: (.*)", text)
    # systemd keeps `$$` in the stored argv and turns it into `$` when it runs the command
    assert split_dump(line) == ["echo", *(word.replace("$", "$$") for word in NASTY)]
    assert "Unbalanced" not in text and "Ignoring" not in text


def test_environment_survives_systemds_parser(tmp_path):
    env = [("A", "two words"), ("B", 'q"uote'), ("C", "$HOME"), ("D", "50%"), ("E", "back\\slash"), ("F", "")]
    line = " ".join(units.env_assignment(k, v) for k, v in env)
    text = analyze(tmp_path, f"[Service]\nExecStart=/bin/true\nEnvironment={line}\n")
    assert re.findall(r"Environment: (.*)", text) == [f"{k}={v}" for k, v in env]


def test_exec_word_quotes_only_what_needs_it():
    assert units.exec_word("--bind") == "--bind"
    assert units.exec_word("") == '""'
    assert units.exec_word("a b") == '"a b"'
    assert units.exec_word("50%") == '"50%%"'
    assert units.exec_word("$X") == '"$$X"'
    assert units.exec_word('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize("bad", ["line\nbreak", "carriage\rreturn", "nul\0", "bell\x07"])
def test_control_characters_are_refused(bad):
    with pytest.raises(BuildError, match="control character"):
        units.exec_word(bad)
    with pytest.raises(BuildError, match="control character"):
        units.env_assignment("X", bad)
    with pytest.raises(BuildError):
        units.unit_value(bad, "the user")


def test_bad_names_and_executables_are_refused():
    for name in ("1X", "A-B", "A B", ""):
        with pytest.raises(BuildError):
            units.env_assignment(name, "v")
    for exe in ("relative/bin", "/bin/with space", "/bin/%n"):
        with pytest.raises(BuildError):
            units.exec_line(["x"], exe)
    with pytest.raises(BuildError):
        units.exec_line([])


def redis():
    return scenarios.load("redis")


def test_redis_unit_text():
    text = units.workload_unit(fullos.recipe_service(redis()))
    lines = text.splitlines()
    assert 'ExecStart=redis-server --bind 0.0.0.0 --protected-mode no --save "" --appendonly no' in lines
    assert "User=redis" in lines and "WorkingDirectory=/var/lib/redis" in lines
    assert "Restart=no" in lines and "WantedBy=multi-user.target" in lines
    assert not any(line.startswith(("Group=", "RootDirectory=")) for line in lines)
    assert '"HOSTNAME=explorer-redis"' in text


def test_postgres_unit_keeps_env_and_empty_argument(tmp_path):
    text = units.workload_unit(fullos.recipe_service(scenarios.load("postgres")))
    assert "User=postgres" in text and '"LANG=C.UTF-8"' in text
    assert "-c external_pid_file=" in text  # a word ending in `=` needs no quotes
    parsed = analyze(tmp_path, text.replace("ExecStart=", "ExecStart=@/bin/true "))
    assert "Command Line: /usr/lib/postgresql/15/bin/postgres -D" in parsed


def test_image_unit_uses_the_images_root(tmp_path):
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/mongod").write_text("")
    (root / "usr/bin/mongod").chmod(0o755)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nmongodb:x:999:999::/data/db:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nmongodb:x:999:\n")
    config = {"entrypoint": [], "command": ["mongod"], "user": "mongodb", "workdir": "/data", "env": ["A=1"]}
    scenario = scenarios.load("mongodb")
    text = units.workload_unit(fullos.image_service(scenario, root, config))
    assert "ExecStart=@/usr/bin/mongod mongod --wiredTigerCacheSizeGB 0.25" in text
    assert "User=999" in text and "Group=999" in text
    assert f"RootDirectory={fullos.IMAGE_ROOT}" in text and "MountAPIVFS=yes" in text
    assert '"HOME=/data/db"' in text and '"A=1"' in text


def test_interfaces_dhcp_on_both_nics():
    text = units.interfaces_text()
    assert "auto lo\niface lo inet loopback" in text
    for nic in ("eth0", "eth1"):
        assert f"allow-hotplug {nic}\niface {nic} inet dhcp" in text
    assert "eth1" not in units.interfaces_text(("eth0",))


def test_cache_key_changes_with_each_input(monkeypatch):
    base = redis()
    recipe = base.workload.recipe
    keys = {fullos.cache_key(base)}
    variants = [
        dataclasses.replace(
            base, workload=dataclasses.replace(base.workload, recipe=dataclasses.replace(recipe, **change))
        )
        for change in (
            {"suite": "trixie"},
            {"packages": ("redis-server", "curl")},
            {"command": ("redis-server",)},
            {"user": "root"},
            {"env": (("A", "1"),)},
            {"files": (("/etc/x", "y"),)},
        )
    ]
    variants.append(dataclasses.replace(base, workload=dataclasses.replace(base.workload, command=("x",))))
    variants.append(dataclasses.replace(base, name="redis2"))
    keys |= {fullos.cache_key(v) for v in variants}
    assert len(keys) == len(variants) + 1
    assert fullos.cache_key(redis()) == fullos.cache_key(base)  # stable
    for name, value in (("FORMAT", 99), ("OS_PACKAGES", ("systemd-sysv",)), ("CMDLINE", "root=/dev/vdb")):
        with monkeypatch.context() as patch:
            patch.setattr(fullos, name, value)
            assert fullos.cache_key(base) not in keys
    with monkeypatch.context() as patch:
        patch.setattr(units, "SUDOERS", "changed\n")
        assert fullos.cache_key(base) not in keys


def test_image_cache_key_covers_id_and_config():
    mongo = scenarios.load("mongodb")
    config = {"entrypoint": ["docker-entrypoint.sh"], "command": ["mongod"], "user": "", "workdir": "/", "env": []}
    one = fullos.cache_key(mongo, "sha256:aa", config)
    assert one != fullos.cache_key(mongo, "sha256:bb", config)
    assert one != fullos.cache_key(mongo, "sha256:aa", {**config, "user": "mongodb"})


STATUS = """\
Package: base-lib
Status: install ok installed
Priority: required
Installed-Size: 10

Package: srv
Status: install ok installed
Priority: optional
Installed-Size: 100
Depends: base-lib (>= 1), libsrv1:any | libsrv-alt, tools
Pre-Depends: adduser

Package: libsrv1
Status: install ok installed
Priority: optional
Installed-Size: 20

Package: tools-impl
Status: install ok installed
Priority: optional
Provides: tools (= 1)
Depends: libsrv1

Package: adduser
Status: install ok installed
Priority: important

Package: removed
Status: deinstall ok config-files
Priority: optional
"""


def test_workload_packages_are_the_closure_minus_the_os():
    packages = dpkg_db.parse_status(STATUS)
    assert "removed" not in packages
    assert packages["srv"].depends[0] == ("adduser",)  # Pre-Depends first
    assert packages["srv"].depends[2] == ("libsrv1", "libsrv-alt")
    assert dpkg_db.workload_packages(packages, ("srv",), ()) == ["libsrv1", "srv", "tools-impl"]
    assert dpkg_db.workload_packages(packages, ("srv",), ("tools-impl",)) == ["srv"]


def test_guest_paths_stay_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "etc/escape").symlink_to(outside)  # absolute: it means /tmp/... inside the image, missing there
    (root / "etc/abs").symlink_to("/etc")  # absolute, resolved inside the root
    (root / "etc/up").symlink_to("../../..")  # `..` stops at the image's /
    with pytest.raises(BuildError, match="dangling"):
        fullos_guest.write_scenario_file(root, "/etc/escape/f", "x")
    fullos_guest.write_scenario_file(root, "/etc/abs/f", "x")
    fullos_guest.write_scenario_file(root, "/etc/up/new/g", "y")
    assert not any(outside.iterdir())
    assert (root / "etc/f").read_text() == "x"
    assert (root / "new/g").read_text() == "y"
    for bad in ("relative", "/etc/../x", "/etc/", "/a\0b"):
        with pytest.raises(BuildError):
            fullos_guest.guest_target(root, bad)


def test_scenario_file_keeps_an_existing_files_mode(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/conf").write_text("old")
    (root / "etc/conf").chmod(0o640)
    (root / "etc/link").symlink_to("/etc/conf")
    fullos_guest.write_scenario_file(root, "/etc/conf", "new")
    assert (root / "etc/conf").stat().st_mode & 0o777 == 0o640
    fullos_guest.write_file(root, "/etc/link", "replaced")
    assert not (root / "etc/link").is_symlink() and (root / "etc/conf").read_text() == "new"


def test_masking_removes_enablement_and_alias_links(tmp_path):
    system = tmp_path / fullos_guest.SYSTEM
    (system / "multi-user.target.wants").mkdir(parents=True)
    (system / "multi-user.target.wants/redis-server.service").symlink_to("/lib/systemd/system/redis-server.service")
    (system / "redis.service").symlink_to("/lib/systemd/system/redis-server.service")
    (system / "multi-user.target.wants/ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    fullos_guest.mask_units(tmp_path, ["redis-server.service"])
    assert os.readlink(system / "redis-server.service") == "/dev/null"
    assert not (system / "redis.service").is_symlink()
    assert not (system / "multi-user.target.wants/redis-server.service").is_symlink()
    assert (system / "multi-user.target.wants/ssh.service").is_symlink()


def test_bundled_vagrant_key_is_debians():
    shipped = sorted(Path("/").glob(fullos.VAGRANT_KEYS_GLOB.lstrip("/") + ".pub"))
    if not shipped:
        pytest.skip("Debian's vagrant package is not installed")
    assert shipped[-1].read_text().split()[:2] == fullos_guest.VAGRANT_PUBLIC_KEY.split()[:2]


def test_disk_size_has_headroom():
    assert fullos.disk_size(700 * 2**20) == 4 * 2**30
    assert fullos.disk_size(4 * 2**30) >= 7 * 2**30
    assert fullos.disk_size(4 * 2**30) % (256 * 2**20) == 0


def fake_image(tmp_path: Path) -> fullos.FullOSImage:
    return fullos.FullOSImage(
        tmp_path / "root.qcow2",
        tmp_path / "vmlinuz",
        tmp_path / "initrd.img",
        fullos.CMDLINE,
        "6.1.0-1-amd64",
        {"disk_virtual_bytes": 4 * 2**30, "cache_key": "k" * 24},
    )


def test_box_metadata(tmp_path):
    assert json.loads(vagrant_box.box_metadata(fake_image(tmp_path))) == {
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": 4,
    }


def test_render_refuses_unmatched_placeholders():
    with pytest.raises(BuildError):
        vagrant_box.render("@A@ @B@", {"A": "1"})
    with pytest.raises(BuildError):
        vagrant_box.render("@A@", {"A": "1", "C": "2"})


def ruby_check(path: Path) -> None:
    if shutil.which("ruby") is None:
        pytest.skip("ruby is not installed (it comes with vagrant: scripts/setup-host)")
    done = subprocess.run(["ruby", "-c", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Syntax OK" in done.stdout, done.stderr


def test_box_vagrantfile_is_valid_ruby(tmp_path):
    text = vagrant_box.box_vagrantfile(fake_image(tmp_path))
    assert "lv.cmd_line = 'root=/dev/vda rw console=ttyS0 net.ifnames=0'" in text
    assert 'File.join(box_dir, "vmlinuz")' in text and 'File.join(box_dir, "initrd.img")' in text
    (tmp_path / "Vagrantfile").write_text(text)
    ruby_check(tmp_path / "Vagrantfile")


def test_ruby_string_is_inert():
    assert vagrant_box.ruby_string("a'b\\c #{x}") == "'a\\'b\\\\c #{x}'"


def test_top_level_vagrantfile(tmp_path):
    ruby_check(ROOT / "Vagrantfile")
    text = (ROOT / "Vagrantfile").read_text()
    for needle in (
        "lv.mgmt_attach = false",
        "lv.qemu_use_agent = true",
        'type: "user"',
        "auto_config: false",
        'config.ssh.host = "127.0.0.1"',
        "config.ssh.insert_key = false",
        "config.vm.guest = :debian",
        'lv.cpu_model = "qemu64"',
        "lv.memballoon_enabled = false",
        'lv.graphics_type = "none"',
        "disabled: true",
        "lv.storage_pool_name = pool",
        "bus=pci.0,addr=0x10",
        "hostfwd=tcp:127.0.0.1:",
    ):
        assert needle in text, needle
    assert "0.0.0.0" not in text


def test_machine_settings_are_what_the_vagrantfile_reads(tmp_path):
    settings = vagrant_box.machine_settings(redis(), "explorer/redis-abc", "qemu", tmp_path / "key")
    text = (ROOT / "Vagrantfile").read_text()
    for key in re.findall(r'settings\.fetch\("(\w+)"', text) + re.findall(r'settings\["(\w+)"\]', text):
        assert key in settings, key
    assert settings["host_port"] == settings["guest_port"] == 6379


def test_add_box_argv(tmp_path):
    box = vagrant_box.Box("explorer/redis-abc", tmp_path / "x.box", tmp_path / "redis.json", fake_image(tmp_path))
    assert vagrant_box.add_box_argv(box.path, box.name) == [
        "vagrant",
        "box",
        "add",
        "--force",
        "--name",
        "explorer/redis-abc",
        str(tmp_path / "x.box"),
    ]


def test_package_units_are_what_the_packages_ship(tmp_path):
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info / "postgresql-common.list").write_text(
        "/lib/systemd/system\n/lib/systemd/system/postgresql.service\n/lib/systemd/system/postgresql@.service\n"
        "/lib/systemd/system-generators/postgresql-generator\n/usr/lib/systemd/system/pg.socket\n"
        "/lib/systemd/system/postgresql.service.d/override.conf\n"
    )
    (info / "libfoo:amd64.list").write_text("/lib/systemd/system/foo.timer\n")
    assert fullos_guest.package_units(tmp_path, ["postgresql-common", "libfoo", "absent"]) == [
        "foo.timer",
        "pg.socket",
        "postgresql.service",
        "postgresql@.service",
    ]


def test_cli_refuses_fullos_for_an_image_scenario():
    from tests.conftest import run_explorer

    done = run_explorer("build", "mongodb", "--fullos", timeout=60)
    assert done.returncode == 2 and "offline recipe" in done.stderr


def test_image_ids_get_guest_entries(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n")
    (tmp_path / "etc/group").write_text("root:x:0:\n")
    fullos_guest.ensure_ids(tmp_path, 100, 101, "/var/lib/redis")  # uid taken: kept; gid free: added
    fullos_guest.ensure_ids(tmp_path, 999, 0, "/data/db")
    fullos_guest.ensure_ids(tmp_path, 999, 0, "/data/db")  # idempotent
    assert (tmp_path / "etc/passwd").read_text().splitlines()[2:] == [
        "explorer-uid-999:x:999:0::/data/db:/usr/sbin/nologin"
    ]
    assert (tmp_path / "etc/group").read_text().splitlines()[1:] == ["explorer-gid-101:x:101:"]


def evaluate_vagrantfile(path: Path, env: dict[str, str]) -> tuple[dict, str]:
    """The config calls a Vagrantfile makes, recorded by a stub `Vagrant` module (no Vagrant
    runs), and what it printed on stderr."""
    if shutil.which("ruby") is None:
        pytest.skip("ruby is not installed (it comes with vagrant: scripts/setup-host)")
    stub = Path(__file__).parent / "fixtures" / "vagrant_stub.rb"
    done = subprocess.run(
        ["ruby", str(stub), str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout), done.stderr


def test_top_level_vagrantfile_reads_explorers_settings(tmp_path):
    (tmp_path / "vagrant").mkdir()
    settings = vagrant_box.machine_settings(redis(), "explorer/redis-abc", "qemu", tmp_path / "key")
    (tmp_path / "vagrant/redis.json").write_text(json.dumps({**settings, "host_port": 16379}))
    config, _ = evaluate_vagrantfile(ROOT / "Vagrantfile", {"EXPLORER_CACHE": str(tmp_path)})
    assert config["vm.box"] == "explorer/redis-abc" and config["libvirt.driver"] == "qemu"
    assert config["libvirt.cpu_model"] == "qemu64" and config["libvirt.memory"] == 512
    assert config["ssh.private_key_path"] == str(tmp_path / "key")
    netdev = config["libvirt.qemuargs"][1][0]["value"]
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev and "hostfwd=tcp:127.0.0.1:16379-:6379" in netdev
    overridden, _ = evaluate_vagrantfile(
        ROOT / "Vagrantfile",
        {
            "EXPLORER_CACHE": str(tmp_path),
            "EXPLORER_LIBVIRT_DRIVER": "kvm",
            "EXPLORER_SSH_PORT": "2299",
            "EXPLORER_STORAGE_POOL": "p2",
        },
    )
    assert overridden["libvirt.driver"] == "kvm" and overridden["libvirt.cpu_mode"] == "host-passthrough"
    assert overridden["ssh.port"] == 2299 and overridden["libvirt.storage_pool_name"] == "p2"


def test_top_level_vagrantfile_without_a_box_warns(tmp_path):
    config, stderr = evaluate_vagrantfile(
        ROOT / "Vagrantfile", {"EXPLORER_CACHE": str(tmp_path), "EXPLORER_SCENARIO": "postgres"}
    )
    assert "explorer build postgres --box" in stderr
    assert config["vm.box"] == "explorer/postgres"  # so `vagrant destroy -f` still loads it


def test_box_vagrantfile_points_at_the_files_beside_it(tmp_path):
    (tmp_path / "Vagrantfile").write_text(vagrant_box.box_vagrantfile(fake_image(tmp_path)))
    config, _ = evaluate_vagrantfile(tmp_path / "Vagrantfile", {})
    assert config["libvirt.kernel"] == str(tmp_path / "vmlinuz")
    assert config["libvirt.initrd"] == str(tmp_path / "initrd.img")
    assert config["libvirt.cmd_line"] == fullos.CMDLINE  # vagrant-libvirt 0.11's name for it
