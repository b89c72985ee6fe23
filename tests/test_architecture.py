"""docs/architecture.md names every module, and the import graph points one way: the engine never imports server,
no modules import each other in a circle, and the base modules (types, errors, limits, pixels) import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_modules() -> list[Path]:
    return sorted(p for folder in ("medviz_core", "server") for p in (REPO / folder).rglob("*.py")
                  if p.name != "__init__.py")


def test_the_architecture_page_names_every_python_and_js_module() -> None:
    page = (REPO / "docs" / "architecture.md").read_text()
    missing = [str(p.relative_to(REPO)) for p in python_modules() if f"`{p.stem}" not in page]
    missing += [p.name for p in sorted((REPO / "web" / "js").glob("*.js")) if p.stem not in page]
    assert missing == []


def test_no_engine_module_imports_the_server() -> None:
    offenders = []
    for path in (REPO / "medviz_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n == "server" or n.startswith("server.")]
    assert offenders == []


def test_only_the_wire_package_knows_the_step_frames_field_names() -> None:
    knowing = sorted(str(p.relative_to(REPO)) for folder in ("medviz_core", "server", "benchmarks", "docs")
                     for p in (REPO / folder).rglob("*.py") if '"t_ms"' in p.read_text() or '"token_id"' in p.read_text())
    assert knowing == ["medviz_core/wire/server_frames.py"]


BASE_MODULES = ("medviz_core.types", "medviz_core.errors", "medviz_core.limits", "medviz_core.pixels")
"""The bottom of medviz_core: each imports no medviz_core module but another base module."""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(module: str, source: str, known: set[str], package: bool = False) -> set[str]:
    """The known modules `source` imports, at module level or inside a function (TYPE_CHECKING too).

    `from package import name` imports the module package.name when there is one, else the package.
    """
    parent = module if package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parent
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            origin = ".".join(part for part in (base if node.level else "", node.module or "") if part)
            found.update(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                         for alias in node.names)
    return {name for name in found if name in known} - {module}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(p for folder in ("medviz_core", "server") for p in (REPO / folder).rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(module_name(p), p.read_text(), known, p.name == "__init__.py")
            for p in paths}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or through others (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(circles)


def test_the_import_circle_finder_finds_a_circle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_no_medviz_core_or_server_modules_import_each_other_in_a_circle() -> None:
    assert import_circles(import_graph()) == []


def test_the_base_modules_import_no_medviz_core_module_above_them() -> None:
    graph = import_graph()
    upward = sorted(f"{module} imports {imported}" for module in BASE_MODULES for imported in graph[module]
                    if imported not in BASE_MODULES)
    assert upward == []


def test_the_import_graph_sees_relative_absolute_function_level_and_package_imports() -> None:
    known = {"medviz_core", "medviz_core.capture", "medviz_core.dicom", "medviz_core.errors", "medviz_core.types",
             "medviz_core.wire", "medviz_core.wire.codes", "medviz_core.wire.limits"}
    source = ("from . import codes as named\nfrom ..errors import ImageError\nimport numpy\n\n"
              "def later():\n    import medviz_core.dicom\n    from ..types import Step\n    from .limits import X\n")
    assert imported_modules("medviz_core.wire.limits", source, known) == {
        "medviz_core.wire.codes", "medviz_core.errors", "medviz_core.dicom", "medviz_core.types"}
