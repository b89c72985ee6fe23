"""worker.py over a real server: analyses interleave with a live session's steps, bounded and in turn."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from medviz_core.analyses.compute import job_id
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import ErrorFrame, StepFrame
from server.settings import Settings
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import kinds, receive_all, recv, run, serve, session, session_of, start_bytes
from tests.wire_client import encode_analyze, encode_command

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


def test_a_flood_from_other_sockets_waits_for_the_live_session_in_turn_and_the_excess_is_busy(
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
                await asyncio.gather(until_done(first, jobs_of(from_first)), until_done(second, jobs_of(from_second)))
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
    during = history[history.index(("frame", live_id)):]
    owners = [who for what, who in during if what == "task"]
    a, b = owners[0], owners[1]
    # the worker's order of work: the whole session first, then the analyses, the two sockets in turn
    assert during == [("frame", live_id)] * 22 + [("task", who) for who in [a, b, a, b, a, b, a, b, a, a, a, a]]
    assert a != b


def test_analyses_of_the_running_session_interleave_one_between_two_of_its_steps(
    tiny_engine: Any, tmp_path: Path, sample_bytes: bytes
) -> None:
    engine = GatedEngine(tiny_engine, hold_at=4)
    with serve(Settings(model="tiny", recordings=tmp_path, analysis_per_connection=8), engine) as server:
        name = session_of(run(session(server, sample_bytes, max_new_tokens=4, record=True))[0])

        async def scenario() -> tuple[list[bytes], list[frames.Frame]]:
            async with connect(f"{server.ws}/ws/session", max_size=None) as live, \
                    connect(f"{server.ws}/ws/replay/{name}", max_size=None) as other:
                await live.send(start_bytes(sample_bytes, max_new_tokens=20, question=GATED))
                head = [await recv(live) for _ in range(5)]  # start and 4 steps: the worker waits before step 4
                for k in range(4):
                    await live.send(encode_analyze(AnalyzeRequest("heads", k)))
                    await live.send(encode_analyze(AnalyzeRequest("gradient", k)))
                    await other.send(encode_analyze(AnalyzeRequest("heads", k)))
                from_other = await answers(other, 4)
                engine.gate.set()
                rest = await receive_all(live)
                await until_done(other, jobs_of(from_other))
                return head + rest, from_other

        data, from_other = run(scenario())
        history = list(server.app.state.sessions.worker.history)

    live_id = session_of(data[0])
    steps = [f for f in map(frames.decode, data) if isinstance(f, StepFrame)]
    assert [s.index for s in steps] == list(range(20)) and kinds(data)[-1] == "end"
    assert sum(1 for f in map(frames.decode, data) if isinstance(f, AnalysisFrame) and f.status == "done") == 8
    during = history[history.index(("frame", live_id)):]
    mine, theirs = during[6][1], during[-1][1]
    assert mine != theirs and len(from_other) == 4
    # start and steps 0-3, then one of its own analyses after each of steps 4-11, then the rest; the other
    # socket's analyses only once the session is over
    assert during == ([("frame", live_id)] * 5 + [e for _ in range(8) for e in (("frame", live_id), ("task", mine))]
                      + [("frame", live_id)] * 9 + [("task", theirs)] * 4)


def test_an_analysis_running_when_a_session_starts_gives_way_and_finishes_after_it(
    tiny_engine: Any, tmp_path: Path, sample_bytes: bytes
) -> None:
    with serve(Settings(model="tiny", recordings=tmp_path), tiny_engine) as server:
        name = session_of(run(session(server, sample_bytes, max_new_tokens=4, record=True))[0])
        request = AnalyzeRequest("gradient", 3)

        async def scenario() -> tuple[list[bytes], list[AnalysisFrame]]:
            async with connect(f"{server.ws}/ws/replay/{name}", max_size=None) as other:
                await other.send(encode_analyze(request))
                states: list[AnalysisFrame] = []
                while not states or states[-1].status != "running":
                    frame = frames.decode(await recv(other))
                    states += [frame] if isinstance(frame, AnalysisFrame) else []
                data = await session(server, sample_bytes, max_new_tokens=8)
                while states[-1].status != "done":
                    frame = frames.decode(await recv(other))
                    states += [frame] if isinstance(frame, AnalysisFrame) else []
                return data, states

        data, states = run(scenario())
        history = list(server.app.state.sessions.worker.history)

    live_id = session_of(data[0])
    assert kinds(data) == ["start", *["step"] * 8, "end"]
    assert [(f.status, f.message) for f in states] == [
        ("queued", ""), ("running", ""), ("queued", "waiting for a live session to finish"), ("running", ""),
        ("done", "")]
    asker = history[-1][1]
    assert history[-12:] == [("task", asker)] + [("frame", live_id)] * 10 + [("task", asker)]


async def next_error(ws: ClientConnection) -> frames.Frame:
    """The next error frame, skipping the session's own frames."""
    while not isinstance(frame := frames.decode(await recv(ws)), ErrorFrame):
        pass
    return frame


def jobs_of(answered: list[frames.Frame]) -> set[str]:
    return {f.job for f in answered if isinstance(f, AnalysisFrame)}


def test_a_watchers_analyses_of_the_live_session_wait_until_its_last_frame(
    tiny_engine: Any, tmp_path: Path, sample_bytes: bytes
) -> None:
    engine = GatedEngine(tiny_engine, hold_at=8)
    with serve(Settings(model="tiny", recordings=tmp_path), engine) as server:

        async def scenario() -> tuple[list[bytes], list[frames.Frame], list[tuple[str, str]]]:
            async with connect(f"{server.ws}/ws/session", max_size=None) as live:
                await live.send(start_bytes(sample_bytes, max_new_tokens=20, question=GATED))
                head = [await recv(live) for _ in range(9)]  # start and 8 steps: the worker waits before step 8
                async with connect(f"{server.ws}/ws/watch/{session_of(head[0])}", max_size=None) as watcher:
                    for steps in (8, 256):  # faithfulness: `steps` forward passes (seconds each on this machine)
                        await watcher.send(encode_analyze(AnalyzeRequest("faithfulness", 7, "raw", steps=steps)))
                    await watcher.send(encode_analyze(AnalyzeRequest("heads", 7)))
                    asked = await answers(watcher, 3)
                    engine.gate.set()
                    rest = await receive_all(live)
                    history = list(server.app.state.sessions.worker.history)
                return head + rest, asked, history  # the watcher leaves: its jobs, nobody else's, stop

        data, asked, history = run(scenario())

    live_id = session_of(data[0])
    assert kinds(data) == ["start", *["step"] * 20, "end"]
    assert [(type(f).__name__, getattr(f, "status", "")) for f in asked] == [("AnalysisFrame", "queued")] * 3
    during = history[history.index(("frame", live_id)):]
    # every frame of the session (start, 20 steps, end) before any of the watcher's analyses starts
    assert during[:22] == [("frame", live_id)] * 22 and all(what == "task" for what, _ in during[22:])


def test_a_watcher_cannot_cancel_the_owners_analysis_and_the_owner_can(
    tiny_engine: Any, tmp_path: Path, sample_bytes: bytes
) -> None:
    engine = GatedEngine(tiny_engine, hold_at=2)
    with serve(Settings(model="tiny", recordings=tmp_path), engine) as server:

        async def scenario() -> tuple[list[frames.Frame], list[frames.Frame], list[bytes]]:
            async with connect(f"{server.ws}/ws/session", max_size=None) as live:
                await live.send(start_bytes(sample_bytes, max_new_tokens=4, question=GATED))
                head = [await recv(live) for _ in range(3)]  # start and 2 steps: the worker waits before step 2
                kept, dropped = AnalyzeRequest("heads", 1), AnalyzeRequest("gradient", 1)
                for request in (kept, dropped):
                    await live.send(encode_analyze(request))
                queued = await answers(live, 2)
                async with connect(f"{server.ws}/ws/watch/{session_of(head[0])}", max_size=None) as watcher:
                    for request in (kept, dropped):  # job ids are computable from the request
                        await watcher.send(encode_command("cancel_analysis", job=job_id(request), id="w"))
                    refusals = [await next_error(watcher) for _ in range(2)]
                await live.send(encode_command("cancel_analysis", job=job_id(dropped), id="o"))
                engine.gate.set()
                rest = await receive_all(live)
                return queued, refusals, rest

        queued, refusals, rest = run(scenario())

    assert [f.status for f in queued if isinstance(f, AnalysisFrame)] == ["queued", "queued"]
    assert [(f.code, f.message) for f in refusals if isinstance(f, ErrorFrame)] == [
        ("bad_request", f"no unfinished analysis job {job_id(r)!r} asked by this connection here")
        for r in (AnalyzeRequest("heads", 1), AnalyzeRequest("gradient", 1))]
    finals = {(f.kind, f.status) for f in map(frames.decode, rest) if isinstance(f, AnalysisFrame)
              and f.status in ("done", "cancelled", "error")}
    assert finals == {("heads", "done"), ("gradient", "cancelled")}
    assert kinds(rest)[-1] == "end"
