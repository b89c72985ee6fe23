"""Fan-out of one session's frames to any number of viewers without waiting on any of them.

Owns: `Channel` (the session log: every kept frame's bytes, encoded once and shared) and
`Viewer` (one bounded asyncio queue per viewer, holding references to those bytes). A
late joiner first gets the log so far, then live frames. `publish` never blocks: a viewer
whose queue is full is dropped, its queued frames are let go at once (so its 4008 close
goes out right after what the socket already holds), and its connection is closed with
4008 and a reason; it can rejoin and catch up from the log. A session that ended with an
error frame carries the close code for it (`Channel.end(close)`, `Viewer.close`). Runs on
the event loop only (the worker thread hands frames over with
`loop.call_soon_threadsafe`). Does not own sockets or encoding.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from medviz_core.wire.codes import CloseCode

__all__ = ["Channel", "Viewer", "ViewerDropped"]
Close = tuple[int, str]  # (close code, reason)
ENDED: Close = (CloseCode.NORMAL, "session ended")


class ViewerDropped(Exception):
    """The viewer fell too far behind and was dropped."""


class Viewer:
    """One watcher: the backlog it joined with, then live frames; None marks the end."""

    def __init__(self, backlog: list[bytes], maxsize: int, ended: bool, close: Close = ENDED) -> None:
        self.backlog = backlog
        self.maxsize = maxsize
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize + 1)  # +1: room for the end marker
        self.dropped = asyncio.Event()
        self.close = close  # how the socket closes after the end marker
        if ended:
            self.queue.put_nowait(None)

    def offer(self, frame: bytes) -> bool:
        """Queue a live frame; False (and dropped) when the viewer is `maxsize` frames behind."""
        if self.dropped.is_set():
            return False
        if self.queue.qsize() >= self.maxsize:
            self.dropped.set()
            self.backlog = []
            while not self.queue.empty():  # drop what it would still have to send before its close
                self.queue.get_nowait()
            return False
        self.queue.put_nowait(frame)
        return True

    def finish(self, close: Close = ENDED) -> None:
        if not self.dropped.is_set():
            self.close = close
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
        self.close: Close = ENDED

    def subscribe(self) -> Viewer:
        viewer = Viewer(list(self.log), self.viewer_queue, self.ended, self.close)
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

    def end(self, close: Close | None = None) -> None:
        """No more frames: every viewer gets the end marker after what it has queued, then `close`
        (default 1000; the code of an error frame when the session ended with one)."""
        if self.ended:
            return
        self.ended = True
        self.close = close or ENDED
        for viewer in self.viewers:
            viewer.finish(self.close)
        self.viewers.clear()

    @property
    def watchers(self) -> int:
        return len(self.viewers)
