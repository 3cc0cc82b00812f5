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
UPPER = ("explorer.cli", "explorer.lifecycle", "explorer.density", "explorer.sides", "explorer.backends")
# explorer.load itself and its clients are the scenario's `load:` vocabulary (which client,
# its parameters, how to read its output); its phase, rounds, native reference and tracing run it
LOAD_RUNNING = (
    "explorer.load.phase",
    "explorer.load.rounds",
    "explorer.load.native",
    "explorer.load.trace",
    "explorer.load.traced",
)
RUNNING = (*UPPER, "explorer.engines", *LOAD_RUNNING, "explorer.cleanup", "explorer.doctor")


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
    assert "explorer.backends.base" in GRAPH["explorer.lifecycle"]
    assert "explorer.output.document" in GRAPH["explorer.output.report"]
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
                "explorer.parts",
                "explorer.images",
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
    assert bad == {}, f"{module} reaches {bad} (module: imported by)"


def test_the_vocabulary_imports_nothing_above_it():
    """model and errors are the bottom: they import nothing of explorer's."""
    for module in ("explorer.model", "explorer.errors", "explorer.interrupts", "explorer.units"):
        assert GRAPH[module] == set(), f"{module} imports {GRAPH[module]}"
