from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from explorer import scenario
from explorer.errors import ScenarioError, UsageError


def redis_data() -> dict:
    return yaml.safe_load((scenario.SCENARIO_DIR / "redis.yaml").read_text())


def test_bundled_scenarios_validate():
    names = scenario.available()
    assert {"redis", "postgres"} <= set(names)
    for name in names:
        loaded = scenario.load(name)
        assert loaded.name == name
        assert loaded.workload.processes


def test_every_problem_is_reported_at_once_with_its_path(tmp_path: Path):
    data = redis_data()
    data["workload"]["build"]["pakages"] = data["workload"]["build"].pop("packages")
    data["workload"]["port"] = 70000
    data["repeats"] = 0
    data["colour"] = "blue"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as err:
        scenario.load_file(path)
    problems = "\n".join(err.value.problems)
    assert f"{path}: (top level): unknown key(s) 'colour'" in problems
    assert "workload.build: unknown key(s) 'pakages'" in problems
    assert "workload.build: 'packages' is a required property" in problems
    assert "workload.port: 70000 is greater than the maximum" in problems
    assert "repeats: 0 is less than the minimum" in problems
    assert err.value.exit_code == 2


def test_image_and_build_are_exclusive():
    data = redis_data()
    data["workload"]["image"] = "redis:7"
    with pytest.raises(ScenarioError, match="exactly one of 'image'"):
        scenario.from_dict(data, "x.yaml")


def test_bad_package_name_and_ready_kind():
    data = redis_data()
    data["workload"]["build"]["packages"] = ["Redis Server"]
    data["workload"]["ready"] = "htp"
    with pytest.raises(ScenarioError) as err:
        scenario.from_dict(data, "x.yaml")
    text = "\n".join(err.value.problems)
    assert "workload.build.packages[0]" in text and "workload.ready" in text


def test_recipe_hash_is_stable_and_content_sensitive():
    a = scenario.from_dict(redis_data()).workload.recipe
    b = scenario.from_dict(redis_data()).workload.recipe
    assert a.content_hash() == b.content_hash()
    changed = redis_data()
    changed["workload"]["build"]["command"].append("--port")
    assert scenario.from_dict(changed).workload.recipe.content_hash() != a.content_hash()
    renamed = redis_data()
    renamed["name"] = "other"  # the scenario's name is not part of what gets built
    assert scenario.from_dict(renamed).workload.recipe.content_hash() == a.content_hash()


def test_unknown_scenario_and_unreadable_file():
    with pytest.raises(UsageError, match="unknown scenario 'nope'"):
        scenario.load("nope")
    with pytest.raises(UsageError, match="cannot read scenario file"):
        scenario.load_file("/nonexistent/x.yaml")


def test_invalid_yaml(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        scenario.load_file(path)
