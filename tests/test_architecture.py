"""docs/architecture.md names every module, and the import graph points one way: the engine never imports server."""

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
