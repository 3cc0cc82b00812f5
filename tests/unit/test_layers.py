"""The layout's promises, read off the source: imports follow the data (scenario -> side ->
probes -> claims -> report) and never go back up. Module-level imports only (what runs at
import time); imports under `if TYPE_CHECKING:` are annotations, not dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "explorer"
# third-party modules that may be imported inside a function: a module costly to load that only
# some outputs or workloads need (matplotlib, ~0.8 s, for charts; pymongo and its bson, ~180 ms;
# psycopg's libpq binding)
LAZY = {"matplotlib", "pymongo", "bson", "psycopg"}
# what runs a side: a module below these must not reach any of them
UPPER = ("explorer.cli", "explorer.lifecycle", "explorer.density_run", "explorer.backends")
# the scenario's `load:` words are explorer.loadspec; explorer.load runs them
RUNNING = (*UPPER, "explorer.engines", "explorer.load", "explorer.cleanup", "explorer.doctor")


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The explorer modules one import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert node.level == 0, "explorer uses absolute imports"
        base = node.module or ""
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    return {name for name in names if name in MODULES}


def _type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(explorer modules imported at module level, [(line, module) of every import inside a function])."""
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    annotations = {id(n) for stmt in tree.body if _type_checking(stmt) for n in ast.walk(stmt)}
    top: set[str] = set()
    nested: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in annotations:
            continue
        if id(node) in inside:
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            nested.append((node.lineno, module or ""))
        else:
            top |= _targets(node)
    return top, nested


GRAPH: dict[str, set[str]] = {}
NESTED: dict[str, list[tuple[int, str]]] = {}
for _name, _path in MODULES.items():
    GRAPH[_name], NESTED[_name] = _imports(_path)
    GRAPH[_name].discard(_name)


def _reach(start: str) -> dict[str, str]:
    """Every module `start` loads at import time, each with the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        here = todo.pop()
        for there in GRAPH[here]:
            if there not in seen and there != start:
                seen[there] = here
                todo.append(there)
    return seen


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
    """A guard for the tests below: the parser finds the edges that are known to exist."""
    assert "explorer.backends" in GRAPH["explorer.lifecycle"]
    assert "explorer.document" in GRAPH["explorer.output.report"]
    assert len(MODULES) > 50


def test_no_import_loop():
    # a module that one of the modules it loads imports back is on a loop
    loops = [m for m in MODULES if any(m in GRAPH[n] for n in [m, *_reach(m)])]
    assert loops == [], f"import loops through {loops}"


def test_function_local_imports_are_only_optional_or_costly_dependencies():
    """A function-local import is for a costly module only some outputs or workloads need,
    never to dodge a loop among explorer's modules."""
    bad = [
        f"{module}:{line} imports {name}"
        for module, nested in NESTED.items()
        for line, name in nested
        if name.split(".")[0] not in LAZY
    ]
    assert bad == []


def test_every_function_local_import_says_why():
    """Each one carries a comment (on its line, the line above, or inside its parentheses)."""
    silent = []
    for module, nested in NESTED.items():
        lines = MODULES[module].read_text().splitlines()
        for line, name in nested:
            if not any("#" in text for text in lines[max(0, line - 2) : line + 1]):
                silent.append(f"{module}:{line} ({name})")
    assert silent == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, ("explorer.output",))))
def test_the_output_wing_reads_documents_only(module):
    """Rendering a saved result loads neither the registry, the backends, the engines, the
    load phase, the probes nor a lifecycle."""
    reached = _reach(module)
    bad = {m: via for m, via in reached.items() if _under(m, (*RUNNING, "explorer.probes", "explorer.images"))}
    assert bad == {}, f"{module} reaches {bad} (module: imported by)"


@pytest.mark.parametrize(
    "module",
    sorted(
        m
        for m in MODULES
        if _under(
            m,
            (
                "explorer.model",
                "explorer.errors",
                "explorer.interrupts",
                "explorer.units",
                "explorer.contracts",
                "explorer.images",
                "explorer.scenario",
                "explorer.loadspec",
                "explorer.sides",
                "explorer.kvm",
                "explorer.cache",
                "explorer.tools",
                "explorer.guest",
                "explorer.probes",
                "explorer.readiness",
            ),
        )
    ),
)
def test_lower_layers_never_import_upward(module):
    """The vocabulary, images, guest channels, probes and readiness know nothing of what runs a side."""
    reached = _reach(module)
    bad = {m: via for m, via in reached.items() if _under(m, RUNNING + ("explorer.output", "explorer.claims"))}
    if _under(module, ("explorer.kvm", "explorer.cache", "explorer.tools")):
        bad.update({m: via for m, via in reached.items() if _under(m, ("explorer.images",))})
    assert bad == {}, f"{module} reaches {bad} (module: imported by)"


def test_the_vocabulary_imports_nothing_above_it():
    """model and errors are the bottom: they import nothing of explorer's."""
    for module in ("explorer.model", "explorer.errors", "explorer.interrupts", "explorer.units"):
        assert GRAPH[module] == set(), f"{module} imports {GRAPH[module]}"


def _layer(module: str) -> int:
    """The floor of a module in the data flow, bottom 0 (what the Layout section of the README says)."""
    if module == "explorer":
        return 0  # the package's face: its version
    for floor, prefixes in enumerate(FLOORS):
        if _under(module, prefixes):
            return floor
    raise AssertionError(f"{module} is on no floor: add it to FLOORS and to the README's Layout")


# the data flow, bottom to top: scenario -> side (backend) -> probes -> claims -> report
FLOORS: tuple[tuple[str, ...], ...] = (
    ("explorer.model", "explorer.errors", "explorer.interrupts", "explorer.units", "explorer.progress"),
    ("explorer.result", "explorer.document"),
    ("explorer.cache", "explorer.tools", "explorer.cpio", "explorer.image_ref", "explorer.dockerd"),
    ("explorer.kvm", "explorer.readiness", "explorer.loadspec", "explorer.vagrant_cli", "explorer.sides"),
    ("explorer.scenario",),
    ("explorer.contracts", "explorer.guest", "explorer.probes", "explorer.claims"),
    ("explorer.images", "explorer.hostinfo"),
    ("explorer.engines", "explorer.output"),
    ("explorer.backends", "explorer.doctor"),
    ("explorer.load", "explorer.inside_run"),
    ("explorer.lifecycle", "explorer.cleanup"),
    ("explorer.density_run",),
    ("explorer.cli",),
)


def test_no_arrow_runs_back_up():
    """Every import (annotations included) goes to a module on the same floor or below."""
    up = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for there in _targets(node):
                    if there != module and _layer(there) > _layer(module):
                        up.append(f"{module} (floor {_layer(module)}) -> {there} (floor {_layer(there)})")
    assert up == []


def _source_imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    return {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for t in _targets(node)}


def test_microvm_and_fullvm_images_do_not_import_each_other():
    for here, there in (
        ("explorer.images.microvm", "explorer.images.fullvm"),
        ("explorer.images.fullvm", "explorer.images.microvm"),
    ):
        bad = {m: sorted(i for i in _source_imports(m) if _under(i, (there,))) for m in MODULES if _under(m, (here,))}
        assert {m: i for m, i in bad.items() if i} == {}


def test_the_scenario_imports_nothing_that_runs_the_load():
    assert not any(_under(m, ("explorer.load",)) for m in _source_imports("explorer.scenario"))
    assert not any(_under(m, ("explorer.load",)) for m in _reach("explorer.scenario"))


def test_nothing_outside_backends_and_engines_reaches_for_a_backends_engine():
    """The Backend is the only way in: `.engine.` of a backend is read in backends/ and engines/ only."""
    found = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("explorer/backends/", "explorer/engines/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "engine"
                and isinstance(node.value, ast.Name)
                and "backend" in node.value.id
            ):
                found.append(f"{rel}:{node.lineno}")
    assert found == []


def test_the_snapshot_engine_reaches_no_private_attribute_of_another_engine():
    tree = ast.parse((PACKAGE / "engines" / "snapshot.py").read_text())
    private = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == []


def test_the_readme_layout_names_every_top_level_module_and_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout\n") : readme.index("\n## ", readme.index("## Layout\n") + 1)]
    entries = [
        f"explorer/{p.name}/" if p.is_dir() else f"explorer/{p.name}"
        for p in sorted(PACKAGE.iterdir())
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    ]
    assert [e for e in entries if e not in layout] == []
    floors = [m for floor in FLOORS for m in floor]
    named = {m for m in MODULES if m.count(".") == 1}
    assert sorted(m for m in named if not any(_under(m, (f,)) for f in floors)) == []
