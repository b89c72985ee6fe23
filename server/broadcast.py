"""Fan-out of one session's frames to any number of viewers without waiting on any of them.

Owns: `Channel` (the session log: every kept frame's bytes, encoded once and shared) and
`Viewer` (one bounded asyncio queue per viewer, holding references to those bytes). A
late joiner first gets the log so far, then live frames. `publish` never blocks: a viewer
whose queue is full is dropped, and its connection is closed with 4008 and a reason; it
can rejoin and catch up from the log. Runs on the event loop only (the worker thread
hands frames over with `loop.call_soon_threadsafe`). Does not own sockets or encoding.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

CLOSE_TOO_SLOW = 4008


def close_reason(text: str) -> str:
    """A websocket close reason: at most 123 bytes of UTF-8."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", errors="ignore")


class ViewerDropped(Exception):
    """The viewer fell too far behind and was dropped."""


class Viewer:
    """One watcher: the backlog it joined with, then live frames; None marks the end."""

    def __init__(self, backlog: list[bytes], maxsize: int, ended: bool) -> None:
        self.backlog = backlog
        self.maxsize = maxsize
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize + 1)  # +1: room for the end marker
        self.dropped = asyncio.Event()
        if ended:
            self.queue.put_nowait(None)

    def offer(self, frame: bytes) -> bool:
        """Queue a live frame; False (and dropped) when the viewer is `maxsize` frames behind."""
        if self.dropped.is_set():
            return False
        if self.queue.qsize() >= self.maxsize:
            self.dropped.set()
            return False
        self.queue.put_nowait(frame)
        return True

    def finish(self) -> None:
        if not self.dropped.is_set():
            self.queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[bytes]:
        """The backlog, then live frames until the session ends; ViewerDropped if dropped."""
        backlog, self.backlog = self.backlog, []
        for frame in backlog:
            yield frame
        while True:
            if self.dropped.is_set():
                raise ViewerDropped()
            live = await self.queue.get()
            if live is None:
                return
            yield live

    @property
    def too_slow_reason(self) -> str:
        return f"viewer fell {self.maxsize} frames behind; reconnect to catch up from the session log"


class Channel:
    """The log of one session and the viewers following it."""

    def __init__(self, viewer_queue: int) -> None:
        self.viewer_queue = viewer_queue
        self.log: list[bytes] = []
        self.viewers: set[Viewer] = set()
        self.ended = False

    def subscribe(self) -> Viewer:
        viewer = Viewer(list(self.log), self.viewer_queue, self.ended)
        if not self.ended:
            self.viewers.add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def publish(self, frame: bytes, keep: bool = True) -> None:
        """Send a frame to every viewer; `keep` also logs it for late joiners (queued frames are not)."""
        if self.ended:
            return
        if keep:
            self.log.append(frame)
        for viewer in list(self.viewers):
            if not viewer.offer(frame):
                self.viewers.discard(viewer)

    def end(self) -> None:
        """No more frames: every viewer gets the end marker after what it has queued."""
        if self.ended:
            return
        self.ended = True
        for viewer in self.viewers:
            viewer.finish()
        self.viewers.clear()

    @property
    def watchers(self) -> int:
        return len(self.viewers)
