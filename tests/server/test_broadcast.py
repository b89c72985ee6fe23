"""broadcast.py: one log shared by all viewers, late joiners, and dropping a viewer that falls behind."""

from __future__ import annotations

import asyncio

from medviz_core.wire.codes import CloseCode, close_reason
from server.broadcast import Channel, Viewer, ViewerDropped


async def drain(viewer: Viewer) -> list[bytes]:
    return [frame async for frame in viewer.frames()]


def test_every_viewer_gets_the_same_frame_objects_in_order() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], bool]:
        channel = Channel(viewer_queue=8)
        a, b = channel.subscribe(), channel.subscribe()
        frames = [b"start", b"step0", b"end"]
        for frame in frames:
            channel.publish(frame)
        channel.end()
        got_a, got_b = await drain(a), await drain(b)
        return got_a, got_b, all(x is y for x, y in zip(got_a, frames))

    got_a, got_b, shared = asyncio.run(scenario())
    assert got_a == got_b == [b"start", b"step0", b"end"] and shared


def test_a_late_joiner_gets_the_log_then_live_frames_but_not_transient_ones() -> None:
    async def scenario() -> list[bytes]:
        channel = Channel(viewer_queue=8)
        channel.publish(b"queued", keep=False)
        channel.publish(b"start")
        late = channel.subscribe()
        channel.publish(b"step0")
        channel.end()
        return await drain(late)

    assert asyncio.run(scenario()) == [b"start", b"step0"]


def test_a_viewer_joining_after_the_end_gets_the_whole_log() -> None:
    async def scenario() -> list[bytes]:
        channel = Channel(viewer_queue=2)
        for frame in (b"start", b"s0", b"s1", b"s2", b"end"):
            channel.publish(frame)
        channel.end()
        return await drain(channel.subscribe())

    assert asyncio.run(scenario()) == [b"start", b"s0", b"s1", b"s2", b"end"]


def test_a_viewer_that_falls_too_far_behind_is_dropped_and_the_others_are_not() -> None:
    async def scenario() -> tuple[bool, bool, int, list[bytes], bool]:
        channel = Channel(viewer_queue=3)
        stuck, reader = channel.subscribe(), channel.subscribe()
        got: list[bytes] = []
        for k in range(5):
            channel.publish(b"frame%d" % k)
            async for frame in _take(reader, 1):
                got.append(frame)
        raised = False
        try:
            await drain(stuck)
        except ViewerDropped:
            raised = True
        return stuck.dropped.is_set(), reader.dropped.is_set(), channel.watchers, got, raised

    stuck_dropped, reader_dropped, watchers, got, raised = asyncio.run(scenario())
    assert (stuck_dropped, reader_dropped, watchers) == (True, False, 1)
    assert got == [b"frame0", b"frame1", b"frame2", b"frame3", b"frame4"] and raised


async def _take(viewer: Viewer, count: int):  # type: ignore[no-untyped-def]
    for _ in range(count):
        yield await viewer.queue.get()


def test_the_close_code_and_reason_for_a_slow_viewer() -> None:
    viewer = Viewer([], maxsize=256, ended=False)
    assert CloseCode.TOO_SLOW == 4008
    assert viewer.too_slow_reason == "viewer fell 256 frames behind; reconnect to catch up from the session log"
    assert len(close_reason("é" * 100).encode("utf-8")) <= 123


class StuckSocket:
    """A websocket whose client never reads: every send waits forever once `limit` frames went out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.application_state = None
        self.never = asyncio.Event()

    async def send_bytes(self, data: bytes) -> None:
        if len(self.sent) >= self.limit:
            await self.never.wait()
        self.sent.append(data)

    async def receive(self) -> dict[str, object]:
        await self.never.wait()
        return {"type": "websocket.disconnect"}

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_a_stuck_viewer_is_closed_with_4008_while_the_session_goes_on() -> None:
    from server.sockets.live import follow

    async def scenario() -> tuple[StuckSocket, list[bytes]]:
        channel = Channel(viewer_queue=2)
        channel.publish(b"start")
        stuck, reader = StuckSocket(limit=1), channel.subscribe()
        watching = asyncio.create_task(follow(stuck, channel.subscribe(), _ignore))  # type: ignore[arg-type]
        reading = asyncio.create_task(drain(reader))
        await asyncio.sleep(0)
        for k in range(4):
            channel.publish(b"step%d" % k)
            await asyncio.sleep(0)
        channel.publish(b"end")
        channel.end()
        await asyncio.wait_for(watching, 5)
        return stuck, await reading

    stuck, others = asyncio.run(scenario())
    assert stuck.closed == (4008, "viewer fell 2 frames behind; reconnect to catch up from the session log")
    assert stuck.sent == [b"start"]
    assert others == [b"start", b"step0", b"step1", b"step2", b"step3", b"end"]


async def _ignore(data: bytes | str) -> None:
    del data
