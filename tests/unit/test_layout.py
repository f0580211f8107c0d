"""The layout's rules, checked on the source: no import cycle, layers point downwards.

Imports are read with :mod:`ast` (module level and inside functions alike), so a
lazy import cannot hide a cycle or a layer violation.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "recsys", "workers", "jobs", "stack", "cli", "demo", "dashboard", "testkit")
PRODUCTION = ("streams", "recsys", "workers", "jobs", "stack", "dashboard")

#: package → top-level modules it must never import.
FORBIDDEN: dict[str, set[str]] = {
    "recsys": {
        "confluent_kafka",
        "streams",
        "workers",
        "jobs",
        "stack",
        "cli",
        "demo",
        "testkit",
        "typer",
        "rich",
    },
    "streams": {"workers", "jobs", "stack", "cli", "demo", "testkit", "typer", "rich"},
    "workers": {"jobs", "stack", "cli", "demo", "testkit", "typer", "rich"},
    "jobs": {"cli", "demo", "testkit", "typer", "rich"},
    "stack": {"jobs", "cli", "demo", "testkit", "typer", "rich"},
    "testkit": {"cli", "demo"},
    # the dashboard reads streams, the domain and the workers' public surface
    "dashboard": {"jobs", "stack", "cli", "demo", "testkit", "typer", "rich"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _imports(name: str, path: Path) -> Iterable[tuple[str, list[str]]]:
    """``(imported module, imported names)`` for every import statement of a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for module, names in _imports(name, path):
            for target in (*(f"{module}.{n}" for n in names), module):
                if target in modules and target != name:
                    graph[name].add(target)
                    break
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def _collapse(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The graph between packages ``depth`` levels deep (``recsys.cf`` at depth 2)."""
    out: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            pa, pb = ".".join(a.split(".")[:depth]), ".".join(b.split(".")[:depth])
            if pa != pb and not pb.startswith(pa + ".") and not pa.startswith(pb + "."):
                out[pa].add(pb)
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_in_a_cycle() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("depth", [1, 2])
def test_no_package_imports_another_in_a_cycle(depth: int) -> None:
    assert _cycles(_collapse(_graph(), depth)) == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_point_downwards(package: str) -> None:
    bad = []
    for name, path in _modules().items():
        if name.split(".")[0] != package:
            continue
        for module, _ in _imports(name, path):
            if module.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{name} imports {module}")
    assert bad == []


def test_production_packages_never_import_the_test_doubles() -> None:
    offenders = [
        f"{name} imports {module}"
        for name, path in _modules().items()
        if name.split(".")[0] in PRODUCTION
        for module, _ in _imports(name, path)
        if module.split(".")[0] == "testkit"
    ]
    assert offenders == []


def test_no_module_imports_a_private_name_of_another() -> None:
    modules = _modules()
    bad = [
        f"{name} imports {module}.{n}"
        for name, path in modules.items()
        for module, names in _imports(name, path)
        if module in modules and module != name
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert bad == []
