"""Analyses across web nodes: a watcher's never runs between the live session's steps on the worker; the owner's do."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame
from tests.scale.conftest import Cluster
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import kinds, receive_all, recv, run, session_of, start_bytes, until


def test_a_watchers_analysis_through_node_b_waits_for_the_session_and_the_owners_runs_between_its_steps(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=4)
    a, b = cluster.node(), cluster.node()
    worker = cluster.worker(engine)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=12, question=GATED))
            head = [await recv(owner) for _ in range(5)]  # start and 4 steps: the worker waits before step 4
            async with connect(f"{b.ws}/ws/watch/{session_of(head[0])}", max_size=None) as watcher:
                await watcher.send(AnalyzeRequest("heads", 2).to_wire())
                await until(lambda: worker.generation.tasks_waiting == 1, "the watcher's job reached the worker")
                await owner.send(AnalyzeRequest("gradient", 3).to_wire())
                await until(lambda: worker.generation.tasks_waiting == 2, "the owner's job reached the worker")
                engine.gate.set()
                owned = head + await receive_all(owner)
                watched = []
                while not any(isinstance(f, AnalysisFrame) and f.status == "done"
                              for f in map(frames.decode, watched[-1:])):
                    watched.append(await recv(watcher))
                return owned, watched

    owned, watched = run(scenario())
    live_id = session_of(owned[0])
    history = list(worker.generation.history)
    during = history[history.index(("frame", live_id)):]
    assert "end" in kinds(owned) and worker.generation.tasks_waiting == 0
    # start and steps 0-4, the owner's gradient (asked through node A), steps 5-11 and the end, then the
    # watcher's heads (asked through node B)
    node_a, node_b = during[6][1], during[-1][1]
    assert during == [("frame", live_id)] * 6 + [("task", node_a)] + [("frame", live_id)] * 8 + [("task", node_b)]
    assert node_a != node_b
    assert [f.kind for f in map(frames.decode, owned) if isinstance(f, AnalysisFrame) and f.status == "done"] == \
        ["gradient"]
