"""Scenario files: YAML -> validated, frozen dataclasses.

Every problem in a file is reported at once, each with the file and the field path, and
unknown keys are errors (a misspelt key silently ignored is a wrong measurement later).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from explorer import loadspec as loads
from explorer import readiness
from explorer.errors import ScenarioError, UsageError
from explorer.image_ref import reference_problem, scenario_name_problem

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

_STR_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}}
_ARGV = {"type": "array", "items": {"type": "string"}, "minItems": 1}
_PACKAGE = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9+.-]+$"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "workload"],
    "properties": {
        "name": {"type": "string"},  # its grammar: reference.scenario_name_problem
        "description": {"type": "string"},
        "workload": {
            "type": "object",
            "additionalProperties": False,
            "required": ["port", "processes", "ready"],
            "oneOf": [{"required": ["image"]}, {"required": ["build"]}],
            "properties": {
                "image": {"type": "string", "minLength": 1},
                "build": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["suite", "packages", "command"],
                    "properties": {
                        "suite": {"type": "string", "pattern": r"^[a-z]+$"},
                        "packages": {"type": "array", "items": _PACKAGE, "minItems": 1},
                        "files": {
                            "type": "object",
                            "propertyNames": {"type": "string", "minLength": 1},  # and file_path_problem
                            "additionalProperties": {"type": "string"},
                        },
                        "entrypoint": _ARGV,
                        "command": _ARGV,
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "user": {"type": "string", "minLength": 1},
                        "workdir": {"type": "string", "pattern": "^/"},
                    },
                },
                "command": _ARGV,
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "processes": {**_STR_LIST, "minItems": 1},
                "ready": {"$ref": "#/$defs/ready"},  # from explorer.readiness.STRATEGIES
            },
        },
        "timeouts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                key: {"type": "number", "exclusiveMinimum": 0} for key in ("build_s", "ready_s", "vm_ready_s")
            },
        },
        "repeats": {"type": "integer", "minimum": 1, "maximum": 100},
        "load": {"$ref": "#/$defs/load"},  # from explorer.loadspec.PARAMS; false: no standard load
        "vm": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "memory_mib": {"type": "integer", "minimum": 64},
                "vcpus": {"type": "integer", "minimum": 1, "maximum": 64},
                "cpu": {"enum": ["default", "maximum"]},
                "tb_cache_mib": {"type": "integer", "minimum": 1},  # QEMU's TCG code cache size (TCG only)
            },
        },
    },
}


@dataclass(frozen=True)
class Recipe:
    """How to build the workload's image offline from Debian packages."""

    suite: str
    packages: tuple[str, ...]
    command: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: str = "root"
    workdir: str = "/"
    files: tuple[tuple[str, str], ...] = ()

    def content_hash(self) -> str:
        """A stable hash of everything that changes the built image."""
        blob = json.dumps(self.__dict__, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Workload:
    port: int
    processes: tuple[str, ...]
    ready: readiness.ReadySpec
    image: str | None = None
    recipe: Recipe | None = None
    command: tuple[str, ...] = ()  # overrides the image's CMD when set


@dataclass(frozen=True)
class Timeouts:
    build_s: float = 900.0
    ready_s: float = 60.0
    vm_ready_s: float = 300.0


@dataclass(frozen=True)
class VMSpec:
    memory_mib: int = 512
    vcpus: int = 1
    cpu: str = "default"
    tb_cache_mib: int | None = None  # None: QEMU's default (up to 1 GiB under system emulation)


@dataclass(frozen=True)
class Scenario:
    name: str
    workload: Workload
    description: str = ""
    timeouts: Timeouts = field(default_factory=Timeouts)
    repeats: int = 5
    vm: VMSpec = field(default_factory=VMSpec)
    source: str = "<memory>"
    load: loads.LoadSpec | None = None  # the standard load (None: none, or no protocol known)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for saved results."""
        w = self.workload
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "image": w.image,
            "recipe": None if w.recipe is None else _recipe_dict(w.recipe),
            "port": w.port,
            "processes": list(w.processes),
            "ready": w.ready.kind,
            "ready_params": dict(w.ready.params),
            "ready_check": w.ready.strategy().describe(),
            "ready_warning": readiness.STRATEGIES[w.ready.kind].WARNING,
            "repeats": self.repeats,
            "load": None if self.load is None else self.load.as_data(),
            "timeouts": self.timeouts.__dict__,
            "vm": self.vm.__dict__,
        }


def _recipe_dict(recipe: Recipe) -> dict[str, Any]:
    out = dict(recipe.__dict__)
    out["env"] = dict(recipe.env)
    out["files"] = sorted(p for p, _ in recipe.files)
    return out


def _path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and list(error.absolute_path) == ["workload"]:
        return "give exactly one of 'image' (a reference) or 'build' (an offline recipe)"
    if error.validator == "additionalProperties":
        # raised on an object (a dict, from YAML) by a schema object
        assert isinstance(error.instance, dict) and isinstance(error.schema, Mapping)
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown key(s) {', '.join(map(repr, extra))}"
    if error.validator == "pattern":
        assert isinstance(error.schema, Mapping)  # the schema object that holds the pattern
        return f"{error.instance!r} is not a valid value here (expected {error.schema['pattern']})"
    return error.message


# JSON Schema's "integer" is any number with a zero fraction (1.0 too); Python code downstream
# (range(), Docker's port map, libvirt's XML) needs an int, so 1.0 is refused, naming the field.
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
_VALIDATOR = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES)


def validate(data: Any, source: str) -> list[str]:
    """Every schema problem in `data`, as 'FILE: field.path: message' lines."""
    schema = {**SCHEMA, "$defs": {"ready": readiness.schema(), "load": loads.schema()}}  # the registries, as now
    validator = _VALIDATOR(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    problems = [(_path(e), _message(e)) for e in errors] + _grammar_problems(data)
    return [f"{source}: {where}: {message}" for where, message in sorted(problems, key=lambda p: p[0])]


def _grammar_problems(data: Any) -> list[tuple[str, str]]:
    """What the schema cannot say well: names Docker must accept, and file paths."""
    if not isinstance(data, dict):
        return []
    found = []
    if isinstance(data.get("name"), str) and (problem := scenario_name_problem(data["name"])):
        found.append(("name", problem))
    workload = got if isinstance(got := data.get("workload"), dict) else {}
    image = workload.get("image")
    if isinstance(image, str) and image and (problem := reference_problem(image)):
        found.append(("workload.image", problem))
    build = got if isinstance(got := workload.get("build"), dict) else {}
    files = got if isinstance(got := build.get("files"), dict) else {}
    for path in files:
        if isinstance(path, str) and (problem := file_path_problem(path)):
            found.append((f"workload.build.files[{path!r}]", problem))
    return found


# Mounted over at run time (a file there would be hidden), or explorer's own (the VM's init).
RESERVED_DIRS = ("/proc", "/sys", "/dev", "/.explorer")


def file_path_problem(path: str) -> str | None:
    """Why `path` cannot be a recipe file's path, or None: it must be absolute and normalised
    (no '.', '..', '//' or trailing '/'), without whitespace or control characters, since it is
    a path inside the image and nothing else."""
    if not path.startswith("/") or path == "/":
        return "a file's path must be absolute, naming a file (e.g. /etc/redis/extra.conf)"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in path):
        return "a file's path must not contain whitespace, NUL or control characters"
    parts = path[1:].split("/")
    if ".." in parts:
        return "'..' in a file's path (path traversal) is not allowed: paths stay inside the image"
    if "" in parts or "." in parts:
        return "a file's path must be normalised: no '//', '/./' or trailing '/'"
    if len(path) > 4096 or any(len(part.encode()) > 255 for part in parts):
        return "a file's path is too long (4096 bytes, 255 per name)"
    reserved = next((d for d in RESERVED_DIRS if path == d or path.startswith(d + "/")), None)
    if reserved:
        return f"{reserved} is not part of the image's files (mounted at run time, or explorer's own)"
    return None


def from_dict(data: dict[str, Any], source: str = "<memory>") -> Scenario:
    problems = validate(data, source)
    if problems:
        raise ScenarioError(problems, hint="see scenarios/redis.yaml for a complete example")
    w = data["workload"]
    recipe = None
    if "build" in w:
        b = w["build"]
        recipe = Recipe(
            suite=b["suite"],
            packages=tuple(b["packages"]),
            command=tuple(b["command"]),
            entrypoint=tuple(b.get("entrypoint", ())),
            env=tuple(sorted(b.get("env", {}).items())),
            user=b.get("user", "root"),
            workdir=b.get("workdir", "/"),
            files=tuple(sorted(b.get("files", {}).items())),
        )
    workload = Workload(
        port=w["port"],
        processes=tuple(w["processes"]),
        ready=readiness.ReadySpec.from_data(w["ready"]),
        image=w.get("image"),
        recipe=recipe,
        command=tuple(w.get("command", ())),
    )
    return Scenario(
        name=data["name"],
        description=data.get("description", ""),
        workload=workload,
        timeouts=Timeouts(**data.get("timeouts", {})),
        repeats=data.get("repeats", 5),
        vm=VMSpec(**data.get("vm", {})),
        source=source,
        load=_load_spec(data.get("load"), workload.ready),
    )


def _load_spec(given: Any, ready: readiness.ReadySpec) -> loads.LoadSpec | None:
    """The scenario's `load:`, else the default for its readiness kind; `load: false`: none."""
    if given is False:
        return None
    if given is not None:
        return loads.LoadSpec.from_data(given)
    return loads.default_for(ready.kind, dict(ready.params))


def load_file(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read scenario file {path}: {exc.strerror}") from exc
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{path}: not valid YAML: {exc}"]) from exc
    return from_dict(data, source=str(path))


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain PyYAML keeps the
    last silently: a repeated `port:` would measure something else than the file seems to say)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # unhashable: SafeLoader's own error follows
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first given on line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def available() -> dict[str, Path]:
    """Bundled scenarios by name."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def load(name: str) -> Scenario:
    found = available()
    if name not in found:
        raise UsageError(
            f"unknown scenario {name!r}",
            hint=f"known scenarios: {', '.join(found) or 'none'}; or give a file with --scenario-file PATH",
        )
    return load_file(found[name])


def image_ref(image: str) -> str:
    """`image`, checked before it reaches Docker (which answers a bad one with a 400)."""
    problem = reference_problem(image)
    if problem:
        raise UsageError(f"--image: {problem}", hint="e.g. --image redis:7.2, --image localhost:5000/db:1")
    return image


def image_scenario(
    image: str,
    port: int,
    ready: str | readiness.ReadySpec,
    processes: tuple[str, ...] = (),
    argv: tuple[str, ...] = (),
) -> Scenario:
    """A scenario made from flags (`explorer run --image REF --port N --ready KIND`).

    Without --process, the workload's process name is read from `argv` (the image's
    ENTRYPOINT + CMD): a wrong name would silently report the workload as not visible.
    """
    image_ref(image)
    origin = "--process"
    if not processes:
        found = workload_process(argv)
        if found is None:
            raise UsageError(
                f"cannot tell the workload's process from {image}'s ENTRYPOINT + CMD {list(argv)}",
                hint="name it: --process NAME (as `ps -e` shows it)",
            )
        processes, origin = (found,), "the image's ENTRYPOINT + CMD"
    name = re.sub(r"[^a-z0-9]+", "-", image.lower().split("/")[-1].split("@")[0])[:200]
    data = {
        "name": name.strip("-") or "image",
        "description": f"{image} (process {', '.join(processes)} from {origin})",
        "workload": {
            "image": image,
            "port": port,
            "processes": list(processes),
            "ready": ready.as_data() if isinstance(ready, readiness.ReadySpec) else ready,
        },
    }
    return from_dict(data, source="--image")


# What images put in front of the workload: init shims, user switchers, shell-script
# entrypoints ending in `exec "$@"`. Their options and VAR=value words are skipped too.
_WRAPPERS = {"tini", "tini-static", "dumb-init", "docker-init", "catatonit", "env"}
_TAKES_USER = {"gosu", "su-exec"}
_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}


def workload_process(argv: tuple[str, ...] | list[str]) -> str | None:
    """The process an ENTRYPOINT + CMD ends up running, or None where only a shell knows."""
    words = list(argv)
    while words:
        word = words.pop(0)
        base = word.rstrip("/").rsplit("/", 1)[-1]
        if base in _WRAPPERS and "--" in words:  # `tini -p SIGTERM -- app`: the program follows --
            words = words[words.index("--") + 1 :]
        elif base in _TAKES_USER:
            words = words[1:]
        elif not (base.endswith(".sh") or base in _WRAPPERS or word.startswith("-") or "=" in word):
            return None if base in _SHELLS or not base else base
    return None
