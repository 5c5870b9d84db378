"""The layout's import rules (docs/ARCHITECTURE.md, "Layout"), read from the source with `ast`: every import
counts, the ones inside functions and under TYPE_CHECKING too, so a deferred import cannot hide a layer
crossing or a cycle."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "common"

# Where each project package's source lives; bench/ and functions/ are not packages (bench scripts import
# each other by bare name with bench/ on sys.path; each handler is loaded from its own folder).
PACKAGE_ROOTS = {"clay_pipeline": LIBRARY / "clay_pipeline", "local": ROOT / "local", "cli": ROOT / "cli"}

# What the pure core may import besides itself: the standard library, pydantic and PyJWT.
CORE_THIRD_PARTY = {"pydantic", "pydantic_core", "jwt", "typing_extensions"}


def module_files() -> dict[str, Path]:
    """Every project module by dotted name: the packages, the bench scripts and the handlers."""
    modules: dict[str, Path] = {}
    for package, folder in PACKAGE_ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    for path in sorted((ROOT / "bench").glob("*.py")):
        modules[f"bench.{path.stem}"] = path
    for path in sorted((ROOT / "functions").glob("*/app.py")):
        modules[f"functions.{path.parent.name}.app"] = path
    return modules


MODULES = module_files()


def imported_names(module: str, path: Path) -> Iterator[str]:
    """The dotted names a module imports, relative imports resolved; `from a import b` yields a.b when a.b
    is a project module (a submodule), else a."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield bench_name(module, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = bench_name(module, node.module or "")
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield submodule if submodule in MODULES else source


def bench_name(module: str, name: str) -> str:
    """A bench script's bare `import harness` is bench.harness."""
    if module.startswith("bench.") and f"bench.{name.split('.', maxsplit=1)[0]}" in MODULES:
        return f"bench.{name}"
    return name


IMPORTS = {module: sorted(set(imported_names(module, path))) for module, path in MODULES.items()}


def project_module(name: str) -> str | None:
    """The project module an imported name refers to (the name itself, or its nearest enclosing module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def crossings(importer_prefix: str, allowed: object, forbidden: tuple[str, ...] = ()) -> list[str]:
    """`importer -> imported` for every import of a module under importer_prefix that `allowed` (a callable
    taking the imported name) refuses or that starts with one of `forbidden`."""
    found = []
    for module, names in IMPORTS.items():
        if not (module == importer_prefix or module.startswith(importer_prefix + ".")):
            continue
        for name in names:
            refused = callable(allowed) and not allowed(name)
            if refused or any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{module} -> {name}  ({MODULES[module].relative_to(ROOT)})")
    return found


def is_standard_library(name: str) -> bool:
    return top(name) in sys.stdlib_module_names or top(name) == "__future__"


def test_every_package_folder_is_found() -> None:
    """Guards the scan itself: an empty module list would make every rule below pass."""
    for prefix in ("clay_pipeline.core", "clay_pipeline.adapters", "clay_pipeline.services", "local", "cli"):
        assert any(module.startswith(prefix + ".") for module in MODULES), prefix
    assert any(module.startswith("bench.") for module in MODULES)
    assert any(module.startswith("functions.") for module in MODULES)


def test_deferred_type_only_and_relative_imports_are_read(tmp_path: Path) -> None:
    """Guards the scan: an import inside a function, under TYPE_CHECKING or relative is an import."""
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from clay_pipeline.services.router import LeadRouter\n"
        "def later():\n    import boto3\n    from . import leads\n    from .rules import RuleSet\n"
    )
    names = set(imported_names("clay_pipeline.core.sample", source))
    assert {"clay_pipeline.services.router", "boto3", "clay_pipeline.core.leads", "clay_pipeline.core.rules"} <= names


def test_core_imports_only_the_standard_library_pydantic_jwt_and_the_core() -> None:
    def allowed(name: str) -> bool:
        return (
            is_standard_library(name)
            or top(name) in CORE_THIRD_PARTY
            or name == "clay_pipeline.core"
            or name.startswith("clay_pipeline.core.")
        )

    found = crossings("clay_pipeline.core", allowed)
    assert not found, "\n".join(found)


def test_adapters_import_no_service() -> None:
    found = crossings("clay_pipeline.adapters", None, ("clay_pipeline.services",))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module", ["config", "observability", "http_api", "queue_batch"])
def test_the_top_level_modules_import_no_service(module: str) -> None:
    found = crossings(f"clay_pipeline.{module}", None, ("clay_pipeline.services",))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("layer", ["clay_pipeline.core", "clay_pipeline.adapters", "clay_pipeline.services"])
def test_only_the_handlers_map_errors_to_http(layer: str) -> None:
    """http_api.py is the one place a domain error becomes an HTTP answer: below the handlers nothing imports it."""
    found = crossings(layer, None, ("clay_pipeline.http_api",))
    assert not found, "\n".join(found)


def test_services_import_no_handler() -> None:
    found = crossings("clay_pipeline.services", None, ("functions", "app"))
    assert not found, "\n".join(found)


def test_the_library_imports_nothing_from_local_cli_bench_or_tests() -> None:
    found = crossings("clay_pipeline", None, ("local", "cli", "bench", "tests", "functions"))
    assert not found, "\n".join(found)


def test_local_imports_no_cli() -> None:
    found = crossings("local", None, ("cli", "bench", "tests"))
    assert not found, "\n".join(found)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): every group of modules that import one another, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_strongly_connected_finds_a_cycle_and_only_a_cycle() -> None:
    """Guards the cycle finder: a -> b -> c -> a is one group, d hanging off it is not in it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_project_modules() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, names in IMPORTS.items():
        for name in names:
            target = project_module(name)
            if target and target != module:
                graph[module].add(target)
    cycles = strongly_connected(graph)
    assert not cycles, "\n".join(" <-> ".join(group) for group in cycles)
