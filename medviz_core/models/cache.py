"""The user cache folder for models medviz builds itself, and building into it exactly once.

Owns: where built models live ($MEDVIZ_CACHE, else $XDG_CACHE_HOME/medviz, else
~/.cache/medviz) and an atomic build (into a scratch folder, then one rename), so
parallel test processes never see half a model. Does not own what is built.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    explicit = os.environ.get("MEDVIZ_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medviz"


def build_once(name: str, build: Callable[[Path], None], marker: str = "config.json") -> Path:
    """Return cache_root()/models/name, calling build(folder) first if it has no `marker` file yet."""
    folder = cache_root() / "models" / name
    if (folder / marker).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        build(scratch)
        try:
            scratch.rename(folder)
        except OSError:
            if not (folder / marker).exists():
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return folder
