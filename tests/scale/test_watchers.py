"""Viewers spread over web nodes: who keeps a session going, and a slow viewer on one node."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from tests.scale.conftest import Cluster
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import kinds, noisy_png, receive_all, recv, run, session_of, start_bytes, until


def test_an_owner_leaving_node_a_does_not_stop_a_session_watched_through_node_b(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=2)
    a, b = cluster.node(), cluster.node()
    worker = cluster.worker(engine)

    async def scenario() -> list[bytes]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=4, question=GATED))
            session_id = session_of(await recv(owner))
            watcher = await connect(f"{b.ws}/ws/watch/{session_id}", max_size=None)
            got = [await recv(watcher)]
        async with watcher:
            await until(lambda: cluster.redis.client().hget(f"medviz:s:{session_id}", "owner") == b"0",
                        "the owner's leaving reached Redis")
            engine.gate.set()
            return got + await receive_all(watcher)

    seen = run(scenario())
    end = frames.decode(seen[-1])
    assert kinds(seen) == ["start", "step", "step", "step", "step", "end"]
    assert isinstance(end, frames.EndFrame) and end.reason == "max_tokens" and worker.served == 1


def test_a_viewer_that_never_reads_is_dropped_by_its_node_and_the_others_get_every_frame(
        cluster: Cluster, tiny_engine: Any) -> None:
    a = cluster.node()
    b = cluster.node(viewer_queue=2, close_timeout_s=0.5)
    engine = GatedEngine(tiny_engine, hold_at=1)
    cluster.worker(engine)
    watching_b = b.app.state.connections.open

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(noisy_png(), max_new_tokens=12, question=GATED))
            first = [await recv(owner), await recv(owner)]
            session_id = session_of(first[0])
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            stalled.connect(("127.0.0.1", b.port))
            stuck = await connect(f"{b.ws}/ws/watch/{session_id}", max_size=None, max_queue=1, sock=stalled)
            stuck.transport.pause_reading()  # its network stalls: the 6 MB start frame fills its socket
            async with connect(f"{b.ws}/ws/watch/{session_id}", max_size=None) as other:
                await until(lambda: watching_b["watch"] == 2, "both viewers joined node B")
                engine.gate.set()
                other_seen = await receive_all(other)
                await until(lambda: watching_b["watch"] == 1, "node B dropped the viewer that never reads")
            stuck.transport.abort()
            return first + await receive_all(owner), other_seen

    owned, other = run(scenario())
    assert kinds(owned) == ["start", *["step"] * 12, "end"] and other == owned



def test_a_crowd_on_node_b_is_counted_in_redis_and_leaving_after_the_end_sends_redis_nothing(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a, b = cluster.node(), cluster.node()
    engine = GatedEngine(tiny_engine, hold_at=1)
    cluster.worker(engine)
    watching_b, node_b = b.app.state.connections.open, b.app.state.sessions.node
    store = cluster.redis.client()

    async def scenario() -> tuple[list[bool], list[str], str]:
        leave = asyncio.Event()

        async def watch_to_the_end(session_id: str) -> bool:
            async with connect(f"{b.ws}/ws/watch/{session_id}", max_size=None) as viewer:
                while frames.decode(await recv(viewer)).type != "end":
                    pass
                await leave.wait()
                return True

        async with connect(f"{a.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=3, question=GATED))
            session_id = session_of(await recv(owner))
            crowd = [asyncio.create_task(watch_to_the_end(session_id)) for _ in range(20)]
            await until(lambda: store.hget(f"medviz:s:{session_id}:watchers", node_b) == b"20",
                        "node B's count of its 20 viewers reached Redis")
            engine.gate.set()
            await receive_all(owner)
            await until(lambda: store.hget(f"medviz:s:{session_id}", "state") == b"finished", "the end")
            with cluster.redis.commands() as sent:
                leave.set()
                ended = await asyncio.gather(*crowd)
                await until(lambda: watching_b["watch"] == 0, "the crowd left node B")
        return ended, sent, session_id

    ended, sent, session_id = run(scenario())
    assert ended == [True] * 20
    assert [command for command in sent if session_id in command] == []
