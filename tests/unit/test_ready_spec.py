"""`ready:` in a scenario and `--ready` on the command line: one registry of strategies, read
by the schema at validation time, so the two cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner

from explorer import readiness, scenario
from explorer.cli import main
from explorer.errors import ScenarioError
from explorer.readiness import ReadySpec, Strategy


def redis_data(ready: Any) -> dict:
    data = yaml.safe_load((scenario.SCENARIO_DIR / "redis.yaml").read_text())
    data["workload"]["ready"] = ready
    return data


def problems(ready: Any) -> str:
    with pytest.raises(ScenarioError) as caught:
        scenario.from_dict(redis_data(ready), "x.yaml")
    return "\n".join(caught.value.problems)


@pytest.mark.parametrize(
    ("ready", "kind", "params"),
    [
        ("redis", "redis", {}),
        ("http", "http", {"path": "/", "status": 200}),
        ({"http": {"path": "/healthz"}}, "http", {"path": "/healthz", "status": 200}),
        ({"http": None}, "http", {"path": "/", "status": 200}),
        (
            {"banner": {"send": "version\r\n", "expect": "VERSION"}},
            "banner",
            {"send": "version\r\n", "expect": "VERSION"},
        ),
        ({"tcp": {}}, "tcp", {}),
    ],
)
def test_ready_is_a_kind_or_a_mapping_of_one_kind_to_its_parameters(ready, kind, params):
    spec = scenario.from_dict(redis_data(ready)).workload.ready
    assert spec == ReadySpec(kind, tuple(params.items()))
    assert spec.strategy().params() == params
    hash(spec)  # frozen, like the rest of the scenario


def test_to_dict_records_the_spec_and_keeps_ready_a_kind():
    loaded = scenario.from_dict(redis_data({"http": {"path": "/missing"}})).to_dict()
    assert loaded["ready"] == "http"
    assert loaded["ready_params"] == {"path": "/missing", "status": 200}
    assert loaded["ready_check"] == "HTTP GET /missing expecting status 200"
    assert loaded["ready_warning"] is None
    assert "the weakest check" in scenario.from_dict(redis_data("tcp")).to_dict()["ready_warning"]


@pytest.mark.parametrize(
    ("ready", "fragment"),
    [
        (
            "htp",
            "x.yaml: workload.ready: 'htp' is not one of ['banner', 'fio', 'http', 'mongodb', 'postgres', 'redis', 'tcp']",
        ),
        ({"htp": {}}, "workload.ready: 'htp' is not one of"),
        ({"http": {"status": "200"}}, "workload.ready.http.status: '200' is not of type 'integer'"),
        ({"http": {"status": 99}}, "workload.ready.http.status: 99 is less than the minimum of 100"),
        ({"http": {"path": "healthz"}}, "workload.ready.http.path: 'healthz' is not a valid value here"),
        ({"http": {"paht": "/"}}, "workload.ready.http: unknown key(s) 'paht'"),
        ({"redis": {"timeout": 1}}, "workload.ready.redis: unknown key(s) 'timeout'"),
        ({"http": {}, "tcp": {}}, "workload.ready: "),
        ({}, "workload.ready: "),
        (5, "workload.ready: 5 is not of type 'string', 'object'"),
    ],
)
def test_schema_rejects_unknown_kinds_and_bad_parameters_with_their_path(ready, fragment):
    assert fragment in problems(ready)


@dataclass
class Memcached(Strategy):
    """A strategy a plugin might add: the schema must accept it without being edited."""

    KIND: ClassVar[str] = "memcached"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = {"stats": {"type": "boolean"}}

    stats: bool = False

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        return True, "VERSION 1.6.18"

    def describe(self) -> str:
        return "memcached's version"


def test_a_strategy_added_to_the_registry_is_accepted_by_the_schema(monkeypatch):
    assert "memcached" in problems("memcached")
    monkeypatch.setitem(readiness.STRATEGIES, "memcached", Memcached)
    assert scenario.from_dict(redis_data("memcached")).workload.ready == ReadySpec("memcached", (("stats", False),))
    spec = scenario.from_dict(redis_data({"memcached": {"stats": True}})).workload.ready
    assert spec.strategy() == Memcached(stats=True)
    assert "workload.ready.memcached.stats: 'yes' is not of type 'boolean'" in problems({"memcached": {"stats": "yes"}})
    assert readiness.parse("memcached") == ReadySpec("memcached", (("stats", False),))
    assert "memcached[:STATS]" in readiness.syntax()


# ---- the command line's form ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "params"),
    [
        ("redis", "redis", {}),
        ("http", "http", {"path": "/", "status": 200}),
        ("http:/healthz", "http", {"path": "/healthz", "status": 200}),
        ("http:/healthz:204", "http", {"path": "/healthz", "status": 204}),
        ("http::404", "http", {"path": "/", "status": 404}),  # an empty value keeps the default
        ("banner", "banner", {"send": "", "expect": ""}),
        ("banner::SSH-", "banner", {"send": "", "expect": "SSH-"}),
        ("banner:version\\r\\n:VERSION", "banner", {"send": "version\r\n", "expect": "VERSION"}),
        ("banner:stats\\n:STAT pid:", "banner", {"send": "stats\n", "expect": "STAT pid:"}),  # the last takes the rest
    ],
)
def test_parse_the_command_line_form(text, kind, params):
    spec = readiness.parse(text)
    assert spec == ReadySpec(kind, tuple(params.items()))
    assert readiness.parse(str(spec)) == spec  # shown (`explorer list`) as it is typed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("htp", "unknown readiness kind 'htp'; known: banner, fio, http, mongodb, postgres, redis, tcp"),
        ("redis:6379", "'redis' takes no parameters"),
        ("http:/:ok", "status must be a whole number, not 'ok'"),
        ("http:/:700", "http status: 700 is greater than the maximum of 599"),
        ("http:healthz", "http path: 'healthz' does not match"),
        ("", "unknown readiness kind ''"),
    ],
)
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(ValueError) as caught:
        readiness.parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("ready", "message"),
    [
        ("htp", "unknown readiness kind 'htp'"),
        ("http:/:ok", "status must be a whole number"),
        ("tcp:1", "'tcp' takes no parameters"),
    ],
)
def test_bad_ready_option_is_a_usage_error_naming_the_option(ready, message):
    result = CliRunner().invoke(main, ["run", "--image", "x:1", "--port", "80", "--ready", ready])
    assert result.exit_code == 2
    assert "Invalid value for '--ready'" in result.output and message in result.output


def test_ready_timeout_must_be_positive():
    result = CliRunner().invoke(main, ["run", "redis", "--ready-timeout", "0"])
    assert result.exit_code == 2 and "Invalid value for '--ready-timeout'" in result.output


def test_ready_option_reaches_the_image_scenario_and_ready_timeout_every_side(monkeypatch):
    """`run --image ... --ready http:/healthz:204 --ready-timeout 7`: the scenario the runner gets."""
    from explorer import lifecycle

    seen = {}

    def fake_run(scen, sides, repeats, progress, load=None):
        seen["scenario"] = scen
        raise SystemExit(0)

    monkeypatch.setattr(lifecycle, "run", fake_run)
    args = [
        "run",
        "--image",
        "nginx:1",
        "--port",
        "80",
        "--process",
        "nginx",
        "--ready",
        "http:/healthz:204",
        "--ready-timeout",
        "7",
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    scen = seen["scenario"]
    assert scen.workload.ready == ReadySpec("http", (("path", "/healthz"), ("status", 204)))
    assert (scen.timeouts.ready_s, scen.timeouts.vm_ready_s) == (7.0, 7.0)
    assert scen.to_dict()["timeouts"]["vm_ready_s"] == 7.0

    assert CliRunner().invoke(main, ["run", "redis", "--ready-timeout", "2.5"]).exit_code == 0
    assert (seen["scenario"].timeouts.ready_s, seen["scenario"].timeouts.vm_ready_s) == (2.5, 2.5)
    assert seen["scenario"].workload.ready == ReadySpec("redis")


def test_the_nginx_scenario_waits_for_http_and_runs_in_the_foreground():
    nginx = scenario.load("nginx")
    assert nginx.workload.ready == ReadySpec("http", (("path", "/"), ("status", 200)))
    assert nginx.workload.recipe.command == ("nginx", "-g", "daemon off; master_process on;")
    files = dict(nginx.workload.recipe.files)
    conf = files["/etc/nginx/nginx.conf"]
    assert "error_log stderr;" in conf and "daemon" not in conf  # -g gives daemon; twice is an error
    assert "listen 80 default_server;" in conf and "root /var/www/html;" in conf
    assert "/var/www/html/index.html" in files
    assert (nginx.workload.port, nginx.workload.processes) == (80, ("nginx",))
