"""worker.py over a real server: analyses interleave with a live session's steps, bounded and in turn."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from medviz_core import frames
from medviz_core.frames import AnalysisFrame, AnalyzeRequest, ErrorFrame, StepFrame
from server.requests import encode_analyze
from server.settings import Settings

from .engines import GATED, GatedEngine
from .helpers import kinds, receive_all, recv, run, serve, session, session_of, start_bytes

TOKENS = 30


async def answers(ws: ClientConnection, count: int) -> list[frames.Frame]:
    """The first answer (analysis frame or error) to each of `count` requests, skipping replay frames."""
    out: list[frames.Frame] = []
    while len(out) < count:
        frame = frames.decode(await recv(ws))
        if isinstance(frame, ErrorFrame) or (isinstance(frame, AnalysisFrame) and frame.status == "queued"):
            out.append(frame)
    return out


async def until_done(ws: ClientConnection, jobs: set[str]) -> None:
    while jobs:
        frame = frames.decode(await recv(ws))
        if isinstance(frame, AnalysisFrame) and frame.status == "done":
            jobs.discard(frame.job)


def test_an_analysis_flood_runs_at_most_one_analysis_between_two_steps_in_turn_and_the_excess_is_busy(
    tiny_engine: Any, tmp_path: Path, sample_bytes: bytes
) -> None:
    engine = GatedEngine(tiny_engine)
    settings = Settings(model="tiny", recordings=tmp_path, analysis_per_connection=8, analysis_queue=12)
    with serve(settings, engine) as server:
        name = session_of(run(session(server, sample_bytes, max_new_tokens=TOKENS, record=True))[0])
        replay = f"{server.ws}/ws/replay/{name}?speed=8"

        async def scenario() -> tuple[list[bytes], list[frames.Frame], list[frames.Frame]]:
            async with connect(f"{server.ws}/ws/session", max_size=None) as live, \
                    connect(replay, max_size=None) as first, connect(replay, max_size=None) as second:
                await live.send(start_bytes(sample_bytes, max_new_tokens=20, question=GATED))
                head = [await recv(live)]  # start: the worker now waits at the gate, between two frames
                for k in range(TOKENS):
                    await first.send(encode_analyze(AnalyzeRequest("heads", k)))
                from_first = await answers(first, TOKENS)
                for k in range(TOKENS):
                    await second.send(encode_analyze(AnalyzeRequest("gradient", k)))
                from_second = await answers(second, TOKENS)
                engine.gate.set()
                live_frames = head + await receive_all(live)
                await asyncio.gather(until_done(first, {f.job for f in from_first if isinstance(f, AnalysisFrame)}),
                                     until_done(second, {f.job for f in from_second if isinstance(f, AnalysisFrame)}))
                return live_frames, from_first, from_second

        live_frames, from_first, from_second = run(scenario())
        history = list(server.app.state.sessions.worker.history)

    live_id = session_of(live_frames[0])
    assert kinds(live_frames) == ["start", *["step"] * 20, "end"]
    assert [type(f).__name__ for f in from_first] == ["AnalysisFrame"] * 8 + ["ErrorFrame"] * 22
    assert [type(f).__name__ for f in from_second] == ["AnalysisFrame"] * 4 + ["ErrorFrame"] * 26
    assert {(f.code, f.message) for f in from_first if isinstance(f, ErrorFrame)} == {
        ("busy", "this connection has 8 analyses waiting, the limit per connection; ask again when one has finished")}
    assert {(f.code, f.message) for f in from_second if isinstance(f, ErrorFrame)} == {
        ("busy", "the server has 12 analyses waiting, its limit; ask again when some have finished")}
    first_live = history.index(("frame", live_id))
    during = history[first_live:]
    owners = [who for what, who in during if what == "task"]
    a, b = owners[0], owners[1]
    # the worker's order of work: start, then one analysis after each step, the two sockets in turn
    assert during[:26] == [("frame", live_id), ("frame", live_id)] + [
        entry for who in [a, b, a, b, a, b, a, b, a, a, a, a] for entry in (("task", who), ("frame", live_id))]
    assert during[26:] == [("frame", live_id)] * 8
    assert a != b and owners.count(a) == 8 and owners.count(b) == 4
    steps = [f for f in map(frames.decode, live_frames) if isinstance(f, StepFrame)]
    assert [s.index for s in steps] == list(range(20))
