"""Web nodes and workers on a real Redis: one session's frames through any node, the queue, cancels, analyses."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from medviz_core.analyses.compute import job_id
from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest, RejoinRequest
from medviz_core.wire.results import AnalysisFrame, GradientResult
from server.analysis_jobs import FINAL
from server.scale.keys import Keys
from tests.scale.conftest import Cluster
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import kinds, receive_all, recv, refused, run, session, session_of, start_bytes, until
from tests.wire_client import encode_analyze, encode_command

KEYS = Keys()


async def _frames_until(ws: ClientConnection, count: int) -> list[bytes]:
    return [await recv(ws) for _ in range(count)]


def test_a_session_started_through_node_a_is_watched_through_node_b_with_the_identical_frames(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    a, b = cluster.node(), cluster.node()
    cluster.worker(engine)

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=6, question=GATED, record=True))
            first = await _frames_until(owner, 4)  # start and steps 0..2: the run waits before step 3
            async with connect(f"{b.ws}/ws/watch/{session_of(first[0])}", max_size=None) as watcher:
                joined = await _frames_until(watcher, 4)  # its backlog, from Redis
                engine.gate.set()
                watched = [*joined, *await receive_all(watcher)]
            owned = [*first, *await receive_all(owner)]
        async with connect(f"{b.ws}/ws/watch/{session_of(first[0])}", max_size=None) as late:
            return owned, watched, await receive_all(late)

    owned, watched, late = run(scenario())
    assert kinds(owned) == ["start", *["step"] * 6, "end"]
    assert watched == owned and late == owned
    session_id = session_of(owned[0])
    recording = read_recording(cluster.settings.recordings / f"{session_id}.medviz")
    assert [f.data for f in recording.frames] == owned and recording.finished
    assert sorted(p.name for p in cluster.settings.recordings.glob("*.medviz")) == [f"{session_id}.medviz"]
    listed = httpx.get(f"{b.http}/api/sessions").json()["sessions"]
    assert [(s["id"], s["state"], s["frames"], s["recording"]) for s in listed] == [
        (session_id, "finished", 8, True)]
    ttl = cluster.redis.client().ttl(KEYS.frames(session_id))
    assert 0 < ttl <= cluster.settings.linger_s


def test_a_recording_made_through_node_a_is_listed_and_replayed_through_node_b(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a, b = cluster.node(), cluster.node()
    cluster.worker(tiny_engine)
    owned = run(session(a, sample_bytes, max_new_tokens=3, record=True))
    session_id = session_of(owned[0])
    listing = httpx.get(f"{b.http}/api/recordings").json()["recordings"]
    assert [(r["id"], r["tokens"], r["finished"]) for r in listing] == [(session_id, 3, True)]

    async def replay() -> list[bytes]:
        async with connect(f"{b.ws}/ws/replay/{session_id}?speed=8", max_size=None) as ws:
            return [await recv(ws) for _ in range(6)]  # replay status, start, 3 steps, end

    replayed = run(replay())
    assert kinds(replayed) == ["replay", "start", "step", "step", "step", "end"] and replayed[1:] == owned


def test_two_workers_serve_two_sessions_at_once(cluster: Cluster, tiny_engine: Any, second_engine: Any,
                                                sample_bytes: bytes) -> None:
    engines = [GatedEngine(tiny_engine, hold_at=1), GatedEngine(second_engine, hold_at=1)]
    a, b = cluster.node(), cluster.node()
    workers = [cluster.worker(engine) for engine in engines]

    async def scenario() -> list[list[bytes]]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as one, \
                connect(f"{b.ws}/ws/session", max_size=None) as two:
            for ws in (one, two):
                await ws.send(start_bytes(sample_bytes, max_new_tokens=3, question=GATED))
            # both runs are past their start and first step while both gates are shut: they run at once
            heads = await asyncio.gather(_frames_until(one, 2), _frames_until(two, 2))
            for engine in engines:
                engine.gate.set()
            tails = await asyncio.gather(receive_all(one), receive_all(two))
        return [[*head, *tail] for head, tail in zip(heads, tails)]

    seen = run(scenario())
    assert [kinds(s) for s in seen] == [["start", "step", "step", "step", "end"]] * 2
    holders = {cluster.redis.client().hget(KEYS.session(session_of(s[0])), "worker") for s in seen}
    assert holders == {w.name.encode() for w in workers}
    assert [w.served for w in workers] == [1, 1]


def test_queue_positions_reach_the_waiting_browsers_and_the_cap_gives_busy(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=1)
    a, b = cluster.node(queue_cap=2), cluster.node(queue_cap=2)
    cluster.worker(engine)

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes], tuple[Any, int | None]]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as running, \
                connect(f"{a.ws}/ws/session", max_size=None) as second, \
                connect(f"{b.ws}/ws/session", max_size=None) as third:
            await running.send(start_bytes(sample_bytes, max_new_tokens=2, question=GATED))
            head = await _frames_until(running, 2)
            await second.send(start_bytes(sample_bytes, max_new_tokens=2))
            second_seen = [await recv(second)]
            await third.send(start_bytes(sample_bytes, max_new_tokens=2))
            third_seen = [await recv(third)]
            async with connect(f"{b.ws}/ws/session", max_size=None) as fourth:
                await fourth.send(start_bytes(sample_bytes, max_new_tokens=2))
                refusal = [await recv(fourth)]
                await receive_all(fourth)
            await second.send(encode_command("cancel"))
            second_seen += await receive_all(second)
            third_seen.append(await recv(third))  # its new position
            engine.gate.set()
            third_seen += await receive_all(third)
            return [*head, *await receive_all(running)], second_seen, third_seen, (
                frames.decode(refusal[0]), fourth.close_code)

    running, second, third, (refusal, code) = run(scenario())
    assert kinds(running) == ["start", "step", "step", "end"]
    assert [frames.decode(d) for d in second[:1]] == [frames.QueuedFrame(1)] and kinds(second)[1:] == ["end"]
    end = frames.decode(second[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.message) == ("cancelled", "cancelled while waiting")
    assert [frames.decode(d) for d in third[:2]] == [frames.QueuedFrame(2), frames.QueuedFrame(1)]
    assert kinds(third)[2:] == ["start", "step", "step", "end"]
    assert isinstance(refusal, frames.ErrorFrame) and (refusal.code, code) == ("busy", 4429)
    assert refusal.message == "the generation queue is full (2 waiting); try again shortly"


def test_cancel_and_the_owner_leaving_reach_the_worker_through_redis(cluster: Cluster, tiny_engine: Any,
                                                                     sample_bytes: bytes) -> None:
    a = cluster.node()
    worker = cluster.worker(tiny_engine)

    async def cancelled() -> list[bytes]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=60))
            got = await _frames_until(ws, 2)
            await ws.send(encode_command("cancel"))
            return [*got, *await receive_all(ws)]

    async def abandoned() -> str:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=60, record=True))
            session_id = session_of(await recv(ws))
            await recv(ws)
        await until(lambda: worker.served == 2, "the abandoned session ended")
        return session_id

    end = frames.decode(run(cancelled())[-1])
    assert isinstance(end, frames.EndFrame) and end.reason == "cancelled" and 1 <= end.tokens < 60
    session_id = run(abandoned())
    recording = read_recording(cluster.settings.recordings / f"{session_id}.medviz")
    assert recording.end is not None and recording.end.reason == "cancelled" and recording.end.tokens < 60


def test_an_analysis_asked_through_node_b_is_computed_by_the_worker_and_answered_with_its_id(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a, b = cluster.node(), cluster.node()
    worker = cluster.worker(tiny_engine)
    asked = AnalyzeRequest("gradient", 1, id="q-1")

    async def scenario() -> list[bytes]:
        data = await session(a, sample_bytes, max_new_tokens=3)
        async with connect(f"{b.ws}/ws/watch/{session_of(data[0])}?stay=1", max_size=None) as ws:
            out = await _frames_until(ws, 5)
            await ws.send(encode_analyze(asked))
            while not any(isinstance(f, AnalysisFrame) and f.status in FINAL for f in map(frames.decode, out[5:])):
                out.append(await recv(ws))
        return out[5:]

    answers = [frames.decode(d) for d in run(scenario())]
    assert all(isinstance(f, AnalysisFrame) and f.id == "q-1" and f.job == job_id(asked) for f in answers)
    final = answers[-1]
    assert isinstance(final, AnalysisFrame) and final.status == "done" and isinstance(final.result, GradientResult)
    assert worker.analyses.runs == 1


def test_an_owner_that_reloads_rejoins_through_another_node_with_its_key_and_stop_still_works(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    a, b = cluster.node(owner_grace_s=30), cluster.node(owner_grace_s=30)
    cluster.worker(engine)

    async def scenario() -> tuple[frames.OwnerFrame, list[bytes], tuple[Any, int | None, str], list[bytes]]:
        async with connect(f"{a.ws}/ws/session?rejoin=1", max_size=None) as page:
            await page.send(start_bytes(sample_bytes, max_new_tokens=8, question=GATED))
            owner = frames.decode(await recv(page))
            assert isinstance(owner, frames.OwnerFrame)
            got = await _frames_until(page, 4)  # start and steps 0..2: the run waits before step 3
            await page.close(1001)  # as a page unloading closes it
        await until(lambda: a.app.state.connections.open["session"] == 0, "node A saw the page go")
        wrong = await refused(f"{b.ws}/ws/session", RejoinRequest(owner.session, "x" * 43).to_wire())
        async with connect(f"{b.ws}/ws/session", max_size=None) as page:
            await page.send(RejoinRequest(owner.session, owner.key).to_wire())
            assert frames.decode(await recv(page)) == owner
            rejoined = await _frames_until(page, 4)
            await page.send(encode_command("cancel"))  # through node B and the worker's inbox in Redis
            await until(lambda: engine.cancels[-1].is_set(), "the worker saw the cancel")  # before step 3 goes
            engine.gate.set()
            return owner, got, wrong, [*rejoined, *await receive_all(page)]

    owner, got, (wrong, code, _), rest = run(scenario())
    assert rest[:4] == got and kinds(rest)[-1] == "end"
    end = frames.decode(rest[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("cancelled", 4)
    assert isinstance(wrong, frames.ErrorFrame) and code == 4404
    assert wrong.message.endswith("as its owner: the owner key does not match; start a new session")
    stored = cluster.redis.client().hget(KEYS.session(owner.session), "owner_key")
    assert stored is not None and owner.key.encode() not in stored  # Redis holds the key's hash only


def test_an_owner_that_does_not_come_back_within_the_grace_period_ends_its_session_and_cannot_rejoin(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    a = cluster.node(owner_grace_s=0.3)
    worker = cluster.worker(engine)

    async def scenario() -> tuple[list[bytes], tuple[Any, int | None, str]]:
        async with connect(f"{a.ws}/ws/session?rejoin=1", max_size=None) as page:
            await page.send(start_bytes(sample_bytes, max_new_tokens=8, question=GATED))
            owner = frames.decode(await recv(page))
            assert isinstance(owner, frames.OwnerFrame)
            await _frames_until(page, 2)
            await page.close(1001)
        await asyncio.sleep(1.0)  # past the grace period: the node has asked the worker to stop
        engine.gate.set()
        await until(lambda: worker.served == 1, "the abandoned session ended")
        async with connect(f"{a.ws}/ws/watch/{owner.session}", max_size=None) as late:
            log = await receive_all(late)
        return log, await refused(f"{a.ws}/ws/session", RejoinRequest(owner.session, owner.key).to_wire())

    log, (late, code, _) = run(scenario())
    end = frames.decode(log[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("cancelled", 4)
    assert isinstance(late, frames.ErrorFrame) and code == 4404
    assert late.message.endswith("as its owner: its owner left and did not come back within 0.3 s; start a new "
                                 "session")
