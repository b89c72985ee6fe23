"""Engines for server tests: the tiny engine with a gate before a run's first step, or one whose runs fail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from medviz_core.errors import RequestError

GATED = "wait for the gate"  # a question that makes a GatedEngine run wait before its first step
FAIL_REQUEST = "fail as a bad request"  # questions that make a FailingEngine's stream raise
FAIL_INTERNAL = "fail inside"


class GatedRun:
    """A run that waits for `gate` before its step `hold_at` (the worker is held there, between frames)."""

    def __init__(self, run: Any, gate: threading.Event, hold_at: int) -> None:
        self._run, self._gate, self._hold_at = run, gate, hold_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def __iter__(self) -> Iterator[Any]:
        for number, step in enumerate(self._run):
            if number == self._hold_at:
                self._gate.wait(60)
            yield step


class GatedEngine:
    """The wrapped engine; a run whose question is GATED waits before its step `hold_at` until `gate` is set."""

    def __init__(self, engine: Any, hold_at: int = 0) -> None:
        self._engine = engine
        self.hold_at = hold_at
        self.gate = threading.Event()
        self.cancels: list[threading.Event] = []  # each gated run's cancel event: a test waits for the worker to see one

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        run = self._engine.stream(*args, **kwargs)
        if kwargs.get("question") == GATED and kwargs.get("cancel") is not None:
            self.cancels.append(kwargs["cancel"])
        return GatedRun(run, self.gate, self.hold_at) if kwargs.get("question") == GATED else run


class FailingEngine:
    """The wrapped engine; `stream` raises for the FAIL_* questions, after the session was queued."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("question") == FAIL_REQUEST:  # as the engine's check of the image-token count does
            raise RequestError("the prompt holds 255 image tokens; expected 1 image(s) of 256")
        if kwargs.get("question") == FAIL_INTERNAL:
            raise RuntimeError("a bug in the engine")
        return self._engine.stream(*args, **kwargs)
