"""The layers of bigdl import downwards only: a test of the import graph, from the source.

Every ``import`` statement counts, the ones inside functions too (a lazy
import is still a dependency).  Layers, bottom first (docs/architecture.md):

errors -> _validation -> runtime, preprocessing -> store -> ingest, loaders, forecast -> train -> estimators, explain -> cluster, cli

(preprocessing is the fitted transforms' state and maths: the store rebuilds
a tabular store's preprocessor from its attributes, ingest fits it.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bigdl"

# What a package may import, besides itself (and anything outside bigdl).
STORE_MUST_NOT_IMPORT = {"ingest", "train", "estimators", "explain", "cluster", "loaders", "datasets", "models", "forecast",
                         "cli"}


def _unit(module: str) -> str:
    """The unit of the graph a module belongs to: ``bigdl.store._format`` -> ``store``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bigdl"


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _all_modules() -> set[str]:
    return {_module_name(path) for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: set[str] | None = None) -> set[str]:
    """The bigdl modules ``path`` imports, relative imports resolved.

    ``from package import module`` counts as importing that module (not the
    package's ``__init__``, which the importing module may itself be part of).
    """
    modules = _all_modules() if modules is None else modules
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = {f"{module}.{alias.name}" for alias in node.names} & modules
            found.update(submodules or {module})
    return {module for module in found if module == "bigdl" or module.startswith("bigdl.")}


def _graph() -> dict[str, set[str]]:
    """Module -> bigdl modules it imports, for every module of the package."""
    modules = _all_modules()
    return {_module_name(path): _imports(path, modules) for path in sorted(PACKAGE.rglob("*.py"))}


def _unit_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        unit = _unit(module)
        edges.setdefault(unit, set())
        edges[unit].update(_unit(other) for other in imported if _unit(other) not in (unit, "bigdl"))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one unit (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return result


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    source = PACKAGE / "store" / "_dataset.py"
    assert "bigdl.store.kinds" in _imports(source) or "bigdl.store" in _imports(source)
    assert _unit("bigdl.store._format") == "store" and _unit("bigdl") == "bigdl"
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_store_imports_nothing_above_it():
    offenders = sorted(f"{module} imports {other}" for module, imported in _graph().items()
                       if _unit(module) == "store" for other in imported if _unit(other) in STORE_MUST_NOT_IMPORT)
    assert not offenders, offenders


def test_store_uses_the_runtime_for_tasks_only():
    """The store may run tasks (verify, from_arrays); it opens no dashboard job and publishes no events."""
    offenders = sorted(f"{module} imports {other}" for module, imported in _graph().items()
                       if _unit(module) == "store" for other in imported if other.startswith("bigdl.runtime._events"))
    assert not offenders, offenders


@pytest.mark.parametrize("package, allowed", [("_validation", {"errors"}),
                                              ("runtime", {"errors", "_validation"}),
                                              ("preprocessing", {"errors", "_validation"})])
def test_the_bottom_layers_import_only_errors_and_the_parameter_checks(package, allowed):
    offenders = sorted(f"{module} imports {other}" for module, imported in _graph().items()
                       if _unit(module) == package for other in imported if _unit(other) not in {package, *allowed})
    assert not offenders, offenders


def test_no_import_cycles_between_packages():
    assert _cycles(_unit_graph()) == []


@pytest.mark.parametrize("package", ["store", "ingest", "loaders", "train", "estimators", "explain", "runtime"])
def test_no_import_cycles_inside_a_package(package):
    modules = {module: {other for other in imported if _unit(other) == package and other != module}
               for module, imported in _graph().items() if _unit(module) == package}
    # A package's __init__ re-exports its modules; the modules importing the package name is what makes a cycle.
    root = f"bigdl.{package}"
    edges = {module: {other for other in imported if other != root} for module, imported in modules.items()
             if module != root}
    assert _cycles(edges) == []


def test_library_code_draws_without_pyplot():
    """Plots draw on their own ``matplotlib.figure.Figure``: no module imports pyplot or switches the backend."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            pyplot = (isinstance(node, ast.Import) and any(alias.name == "matplotlib.pyplot" for alias in node.names)
                      or isinstance(node, ast.ImportFrom) and (node.module == "matplotlib.pyplot" or (
                          node.module == "matplotlib" and any(alias.name == "pyplot" for alias in node.names))))
            switch = isinstance(node, ast.Call) and ast.unparse(node.func) == "matplotlib.use"
            if pyplot or switch:
                offenders.append(f"{_module_name(path)}:{node.lineno}")
    assert not offenders, offenders


def test_forecast_sits_below_train():
    """The baselines and the shared forecasting figures need no torch: train imports them, not the other way."""
    allowed = {"forecast", "errors", "_validation", "runtime", "preprocessing", "store"}
    offenders = sorted(f"{module} imports {other}" for module, imported in _graph().items()
                       if _unit(module) == "forecast" for other in imported if _unit(other) not in allowed)
    assert not offenders, offenders
