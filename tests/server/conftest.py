"""Fixtures: a real uvicorn server (tiny model) per module, and a factory for custom settings."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings
from tests.server.helpers import LiveServer, serve


@pytest.fixture
def make_server(tiny_engine: Any, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a server with settings overrides; every one started is stopped after the test."""
    stack = contextlib.ExitStack()

    def start(**overrides: Any) -> LiveServer:
        settings = Settings(model="tiny", recordings=tmp_path / "recordings", **overrides)
        return stack.enter_context(serve(settings, tiny_engine))

    with stack:
        yield start


@pytest.fixture(scope="module")
def live(tiny_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One default server shared by a test module."""
    settings = Settings(model="tiny", recordings=tmp_path_factory.mktemp("recordings"), max_new_tokens=64)
    with serve(settings, tiny_engine) as server:
        yield server


