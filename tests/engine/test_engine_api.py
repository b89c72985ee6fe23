"""engine/api.py: the engine seam is typed everywhere, torch-free, and a loaded engine has all of it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

from medviz_core.engine.api import AnalysisEngine, EngineRun, StreamEngine

REPO = Path(__file__).resolve().parents[2]


def members(*protocols: type) -> list[str]:
    return sorted({name for protocol in protocols for name in vars(protocol) if not name.startswith("_")})


def test_no_module_of_medviz_core_or_server_types_an_engine_as_any() -> None:
    untyped = []
    for path in sorted(p for folder in ("medviz_core", "server") for p in (REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            named = ([(a.arg, a.annotation) for a in (*node.args.args, *node.args.kwonlyargs)]
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else
                     [(ast.unparse(node.target), node.annotation)] if isinstance(node, ast.AnnAssign) else [])
            untyped += [f"{path.relative_to(REPO)}: {name}" for name, annotation in named
                        if "engine" in name and annotation is not None and "Any" in ast.unparse(annotation)]
    assert untyped == []


def test_the_seam_imports_no_torch() -> None:
    loaded = subprocess.run([sys.executable, "-c", "import sys, medviz_core.engine.api; print('torch' in sys.modules)"],
                            capture_output=True, text=True, cwd=REPO, check=True)
    assert loaded.stdout == "False\n"


def test_the_seam_names_what_the_server_and_the_analyses_call() -> None:
    assert members(AnalysisEngine) == ["device", "facts", "grid", "image_token_id", "inputs_for", "model"]
    assert members(StreamEngine) == ["stream", "suggested", "token_texts"]
    assert members(EngineRun) == ["close", "end", "methods", "params", "prompt"]


def test_a_loaded_engine_and_its_run_have_every_member_the_seam_names(tiny_engine: Any, sample_bytes: bytes) -> None:
    assert [name for name in members(AnalysisEngine, StreamEngine) if not hasattr(tiny_engine, name)] == []
    run = tiny_engine.stream(sample_bytes, max_new_tokens=1)
    steps = list(run)
    assert [name for name in members(EngineRun) if not hasattr(run, name)] == []
    assert (len(steps), run.end.tokens) == (1, 1)
