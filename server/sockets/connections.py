"""How many websockets may be open, per route kind and in all, and when an open one is idle.

Owns: `Connections` (counts of open sockets per kind, `session`, `watch`, `replay`, with a
cap for each and one for the total; `hold` refuses past a cap with BusyError, which the
routes send as a `busy` error and close 4429) and `Idle` (the time of a socket's last
message in either direction; `expired` returns once none has passed for `timeout_s` while
the socket was owed nothing).
Runs on the event loop only. Does not own the sockets (sockets/live.py, sockets/replay.py) or the HTTP
connection limits (uvicorn's, set in uvicorn_config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

from medviz_core.errors import BusyError

SocketKind = Literal["session", "watch", "replay"]
"""The websocket routes, each with its own cap: /ws/session, /ws/watch and /ws/replay."""


class Connections:
    """Open sockets per kind, capped per kind and in total."""

    def __init__(self, caps: Mapping[SocketKind, int], total: int) -> None:
        self.caps = dict(caps)
        self.total = total
        self.open = {kind: 0 for kind in caps}

    @contextlib.contextmanager
    def hold(self, kind: SocketKind) -> Iterator[None]:
        """Count one socket of `kind` for the block; BusyError if its kind or the total is at its cap."""
        if self.open[kind] >= self.caps[kind]:
            raise BusyError(f"the server has {self.open[kind]} {kind} connections open, its limit; try again shortly")
        if sum(self.open.values()) >= self.total:
            raise BusyError(f"the server has {self.total} websocket connections open, its limit; try again shortly")
        self.open[kind] += 1
        try:
            yield
        finally:
            self.open[kind] -= 1


class Idle:
    """When a socket last sent or received a message."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()

    def touch(self) -> None:
        self.last = self.loop.time()

    async def expired(self, busy: Callable[[], bool] = lambda: False) -> None:
        """Returns once `timeout_s` has passed with no `touch` while not `busy()` (a socket still
        owed an analysis is waiting, not idle)."""
        if math.isinf(self.timeout_s):
            await asyncio.Event().wait()  # never idle
        while True:
            left = self.last + self.timeout_s - self.loop.time()
            if left <= 0:
                if not busy():
                    return
                self.touch()
                continue
            await asyncio.sleep(left)
