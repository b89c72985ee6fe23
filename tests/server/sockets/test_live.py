"""/ws/session and /ws/watch on a real uvicorn server with the tiny model."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from tests.server.helpers import LiveServer, kinds, receive_all, recv, refused, run, session, session_of, start_bytes
from tests.wire_client import encode_command


def test_a_full_session_sends_start_every_step_and_end(live: LiveServer, sample_bytes: bytes) -> None:
    data = run(session(live, sample_bytes, max_new_tokens=5, question="Is there an effusion?"))
    assert kinds(data) == ["start", "step", "step", "step", "step", "step", "end"]
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame)
    assert start.model.name == "tiny" and start.model.grid == (16, 16)
    assert start.question == "Is there an effusion?" and start.params.max_new_tokens == 5
    assert start.images[0].png.startswith(b"\x89PNG") and len(start.image_positions) == 256
    steps = [frames.decode(d) for d in data[1:-1]]
    assert [s.index for s in steps if isinstance(s, frames.StepFrame)] == [0, 1, 2, 3, 4]
    assert all(isinstance(s, frames.StepFrame) and list(s.maps) == list(start.methods) for s in steps)
    assert all(len(d) < 2500 for d in data[1:-1])
    end = frames.decode(data[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("max_tokens", 5)


def test_a_recorded_session_is_listed_and_reads_back_byte_for_byte(live: LiveServer, sample_bytes: bytes) -> None:
    data = run(session(live, sample_bytes, max_new_tokens=3, record=True))
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording == start.session
    recording = read_recording(live.settings.recordings / f"{start.recording}.medviz")
    assert [f.data for f in recording.frames] == data and recording.finished
    listing = httpx.get(f"{live.http}/api/recordings").json()["recordings"]
    assert [(r["id"], r["tokens"], r["finished"]) for r in listing if r["id"] == start.recording] == [
        (start.recording, 3, True)
    ]


async def _owner_and_watchers(server: LiveServer, image: bytes, watchers: int) -> tuple[list[bytes], list[list[bytes]]]:
    async with connect(f"{server.ws}/ws/session") as owner:
        await owner.send(start_bytes(image, max_new_tokens=6))
        first = await recv(owner)
        session_id = session_of(first)
        sockets = [await connect(f"{server.ws}/ws/watch/{session_id}") for _ in range(watchers)]
        seen = await asyncio.gather(*(receive_all(ws) for ws in sockets))
        rest = await receive_all(owner)
    return [first, *rest], list(seen)


def test_fifty_watchers_receive_the_identical_frame_sequence(live: LiveServer, sample_bytes: bytes) -> None:
    owner, seen = run(_owner_and_watchers(live, sample_bytes, watchers=50))
    assert kinds(owner)[0] == "start" and kinds(owner)[-1] == "end" and len(owner) == 8
    assert all(frames_seen == owner for frames_seen in seen)


def test_a_late_joiner_gets_every_frame_so_far_then_the_rest(live: LiveServer, sample_bytes: bytes) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{live.ws}/ws/session") as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=8))
            got = [await recv(owner) for _ in range(4)]  # start + 3 steps
            session_id = session_of(got[0])
            async with connect(f"{live.ws}/ws/watch/{session_id}") as late:
                late_frames = await receive_all(late)
            return [*got, *await receive_all(owner)], late_frames

    owner, late = run(scenario())
    assert late == owner and kinds(late)[-1] == "end"


def test_a_viewer_that_never_reads_does_not_hold_up_the_others(live: LiveServer, sample_bytes: bytes) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{live.ws}/ws/session") as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=10))
            first = await recv(owner)
            session_id = session_of(first)
            stuck = await connect(f"{live.ws}/ws/watch/{session_id}", max_queue=1)
            stuck.transport.pause_reading()
            async with connect(f"{live.ws}/ws/watch/{session_id}") as other:
                other_frames = await receive_all(other)
            owner_frames = [first, *await receive_all(owner)]
            stuck.transport.abort()
            return owner_frames, other_frames

    owner, other = run(scenario())
    assert kinds(owner)[-1] == "end" and other == owner


def test_cancel_ends_the_session_with_reason_cancelled(live: LiveServer, sample_bytes: bytes) -> None:
    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/session") as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=60))
            got = [await recv(ws), await recv(ws)]  # start, first step
            await ws.send(encode_command("cancel"))
            return [*got, *await receive_all(ws)]

    data = run(scenario())
    end = frames.decode(data[-1])
    assert isinstance(end, frames.EndFrame) and end.reason == "cancelled"
    assert 1 <= end.tokens < 60 and kinds(data)[:2] == ["start", "step"]


def test_the_owner_leaving_with_nobody_watching_stops_generation(live: LiveServer, sample_bytes: bytes) -> None:
    async def scenario() -> str:
        async with connect(f"{live.ws}/ws/session") as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=60, record=True))
            session_id = session_of(await recv(ws))
            await recv(ws)
        return session_id

    session_id = run(scenario())
    path = live.settings.recordings / f"{session_id}.medviz"
    for _ in range(1200):  # the recording ends with `end` once the worker has stopped
        if read_recording(path).finished:
            break
        run(asyncio.sleep(0.05))
    end = read_recording(path).end
    assert end is not None and end.reason == "cancelled" and end.tokens < 60


def test_the_owner_leaving_while_others_watch_lets_the_session_finish(live: LiveServer, sample_bytes: bytes) -> None:
    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/session") as owner:
            await owner.send(start_bytes(sample_bytes, max_new_tokens=6))
            session_id = session_of(await recv(owner))
            watcher = await connect(f"{live.ws}/ws/watch/{session_id}")
        return await receive_all(watcher)

    data = run(scenario())
    end = frames.decode(data[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("max_tokens", 6)


def test_a_second_session_waits_in_line_with_queued_frames(make_server: Any, sample_bytes: bytes) -> None:
    server: LiveServer = make_server()

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{server.ws}/ws/session") as first:
            await first.send(start_bytes(sample_bytes, max_new_tokens=6))
            await recv(first)
            second = await connect(f"{server.ws}/ws/session")
            await second.send(start_bytes(sample_bytes, max_new_tokens=2))
            return await receive_all(first), await receive_all(second)

    _, second = run(scenario())
    assert kinds(second) == ["queued", "start", "step", "step", "end"]
    assert frames.decode(second[0]) == frames.QueuedFrame(position=1)


def test_past_the_queue_cap_a_session_gets_busy(make_server: Any, sample_bytes: bytes) -> None:
    server: LiveServer = make_server(queue_cap=1)

    async def scenario() -> tuple[object, object]:
        async with connect(f"{server.ws}/ws/session") as first:
            await first.send(start_bytes(sample_bytes, max_new_tokens=8))
            await recv(first)
            async with connect(f"{server.ws}/ws/session") as second:
                await second.send(start_bytes(sample_bytes, max_new_tokens=1))
                assert frames.decode(await recv(second)) == frames.QueuedFrame(position=1)
                async with connect(f"{server.ws}/ws/session") as third:
                    await third.send(start_bytes(sample_bytes, max_new_tokens=1))
                    busy = frames.decode(await recv(third))
                    await third.wait_closed()
                    return busy, third.close_code

    busy, code = run(scenario())
    assert busy == frames.ErrorFrame("busy", "the generation queue is full (1 waiting); try again shortly")
    assert code == 4429


def test_watching_an_unknown_session_is_not_found(live: LiveServer) -> None:

    error, code, _ = run(refused(f"{live.ws}/ws/watch/nope"))
    assert error == frames.ErrorFrame("not_found", "session 'nope' does not exist or has expired")
    assert code == 4404


def test_health_reports_model_device_queue_and_the_models_suggested_params(live: LiveServer) -> None:
    assert httpx.get(f"{live.http}/api/health").json() == {
        "model": "tiny", "device": "cpu", "queue": 0, "stand_in": True,
        "params": {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0,
                   "seed": None},
        "recordings": "ok", "recordings_reason": None}


def test_live_sessions_are_listed_without_question_text(live: LiveServer, sample_bytes: bytes) -> None:
    run(session(live, sample_bytes, max_new_tokens=1, question="secret question"))
    listing = httpx.get(f"{live.http}/api/sessions").json()["sessions"]
    assert listing and set(listing[0]) == {"id", "created", "state", "frames", "watchers", "recording"}
    assert "secret" not in str(listing)



def test_an_owner_dropped_for_falling_behind_keeps_its_session_running_for_a_rejoin(
    tiny_engine: Any, tmp_path: Path
) -> None:
    from server.settings import Settings
    from tests.server.engines import GATED, GatedEngine
    from tests.server.helpers import noisy_png, serve, until

    engine = GatedEngine(tiny_engine)
    settings = Settings(model="tiny", recordings=tmp_path, viewer_queue=2, close_timeout_s=0.5, owner_grace_s=60)
    with serve(settings, engine) as server:
        manager, connections = server.app.state.sessions, server.app.state.connections

        async def scenario() -> list[bytes]:
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            stalled.connect(("127.0.0.1", server.port))
            owner = await connect(f"{server.ws}/ws/session", max_size=None, max_queue=1, sock=stalled)
            await owner.send(start_bytes(noisy_png(), max_new_tokens=24, question=GATED))
            owner.transport.pause_reading()  # the owner's network stalls: the 6 MB start frame fills its socket
            await until(lambda: len(manager.sessions()) == 1 and manager.sessions()[0].frames == 1, "the start")
            session_id = manager.sessions()[0].id
            engine.gate.set()
            await until(lambda: connections.open["session"] == 0, "the owner has been dropped and has left")
            owner.transport.abort()
            async with connect(f"{server.ws}/ws/watch/{session_id}", max_size=None) as rejoined:
                return await receive_all(rejoined)

        data = run(scenario())
    end = frames.decode(data[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("max_tokens", 24)
    assert kinds(data) == ["start", *["step"] * 24, "end"]
