"""docs/architecture.md names every module in its folder's table, and the import graph points one way: the engine
never imports server, no modules (and no folders) import each other in a circle, the base modules (types, errors,
limits, imaging/pixels) import nothing above them, and in web/js the wire and drawing folders import nothing above them."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_modules() -> list[Path]:
    return sorted(p for folder in ("medviz_core", "server") for p in (REPO / folder).rglob("*.py")
                  if p.name != "__init__.py")


def js_modules() -> list[Path]:
    return sorted((REPO / "web" / "js").rglob("*.js"))


def page_sections(page: str) -> dict[str, str]:
    """docs/architecture.md's "### `folder/`" sections by folder: each folder's table."""
    sections: dict[str, str] = {}
    for part in page.split("\n### `")[1:]:
        heading, _, body = part.partition("\n")
        sections[heading.split("`")[0].rstrip("/")] = body
    return sections


def test_the_architecture_page_names_every_python_and_js_module_in_its_folders_table() -> None:
    sections = page_sections((REPO / "docs" / "architecture.md").read_text())
    missing = [str(p.relative_to(REPO)) for p in python_modules() + js_modules()
               if f"`{p.stem}`" not in sections.get(str(p.parent.relative_to(REPO)), "")]
    assert missing == []


def test_no_folder_holds_more_than_fifteen_modules() -> None:
    folders = {p.parent for p in python_modules() + js_modules()}
    crowded = sorted(f"{folder.relative_to(REPO)}: {count}" for folder in folders
                     if (count := len([*folder.glob("*.py"), *folder.glob("*.js")])) > 15)
    assert crowded == []


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


BASE_MODULES = ("medviz_core.types", "medviz_core.errors", "medviz_core.limits", "medviz_core.imaging.pixels")
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
    known = {"medviz_core", "medviz_core.engine.capture", "medviz_core.imaging.dicom", "medviz_core.errors", "medviz_core.types",
             "medviz_core.wire", "medviz_core.wire.codes", "medviz_core.wire.limits"}
    source = ("from . import codes as named\nfrom ..errors import ImageError\nimport numpy\n\n"
              "def later():\n    import medviz_core.imaging.dicom\n    from ..types import Step\n    from .limits import X\n")
    assert imported_modules("medviz_core.wire.limits", source, known) == {
        "medviz_core.wire.codes", "medviz_core.errors", "medviz_core.imaging.dicom", "medviz_core.types"}


def folder_of(module: str) -> str:
    """A module's room in the folder graph: its subfolder, or itself when it sits at the top of medviz_core or server."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {folder_of(module): set() for module in graph}
    for module, imported in graph.items():
        folders[folder_of(module)].update(folder_of(other) for other in imported if folder_of(other) != folder_of(module))
    return folders


def test_the_folders_import_each_other_one_way() -> None:
    assert import_circles(folder_graph(import_graph())) == []


JS_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\()\s*['"](\.{1,2}/[\w./-]+\.js)['"]""")
JS_MAY_IMPORT = {"wire": {"wire"}, "draw": {"draw", "wire"}}
"""What the lower web/js folders may import: the wire modules only each other, the pure renderers the wire too."""


def js_imports(path: Path) -> set[Path]:
    return {(path.parent / spec).resolve() for spec in JS_IMPORT.findall(path.read_text())}


def test_the_web_wire_and_drawing_modules_import_nothing_above_them() -> None:
    root = REPO / "web" / "js"
    upward = sorted(f"{path.relative_to(root)} imports {target.relative_to(root)}" for path in js_modules()
                    if path.parent.name in JS_MAY_IMPORT for target in js_imports(path)
                    if target.parent == root or target.parent.name not in JS_MAY_IMPORT[path.parent.name])
    assert upward == []


def test_the_web_views_and_analyses_folders_do_not_import_each_other_or_the_pages_wiring() -> None:
    root = REPO / "web" / "js"
    wiring = {root / name for name in ("app.js", "controller.js", "render.js", "session.js", "keys.js")}
    crossing = sorted(f"{path.relative_to(root)} imports {target.relative_to(root)}" for path in js_modules()
                      if path.parent.name in ("views", "analyses") for target in js_imports(path)
                      if target in wiring or target.parent.name in ({"views", "analyses"} - {path.parent.name}))
    assert crossing == []


def test_every_web_module_import_names_a_file_that_exists() -> None:
    missing = sorted(f"{path.relative_to(REPO)} -> {target.relative_to(REPO)}" for path in js_modules()
                     for target in js_imports(path) if not target.is_file())
    assert missing == []


def test_the_public_entry_points_keep_their_paths() -> None:
    import tomllib

    from medviz_core.models import load_engine
    from medviz_core.models.load import load_engine as loader

    script = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["medviz"]
    module, _, function = script.partition(":")
    deploy = (REPO / "docs" / "deploy.md").read_text()
    assert (load_engine is loader, callable(getattr(importlib.import_module(module), function)),
            "server.scale.ray_app:build" in deploy, (REPO / "server" / "scale" / "ray_app.py").is_file(),
            "def build(" in (REPO / "server" / "scale" / "ray_app.py").read_text()) == (True, True, True, True, True)
