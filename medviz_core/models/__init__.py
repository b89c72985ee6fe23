"""Models: a reference ("tiny", "demo", "random:medgemma-4b", a hub id or a folder) -> a loaded `Engine`, and
the offline stand-ins built into the user cache. `from medviz_core.models import load_engine` is the public entry."""

from __future__ import annotations

from medviz_core.models.load import load_engine

__all__ = ["load_engine"]
