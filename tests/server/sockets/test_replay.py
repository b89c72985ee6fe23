"""/ws/replay/{id}: recorded bytes sent unchanged at 0.25x-8x, with pause, resume, seek and speed."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from server.sockets.replay import ReplayClock, parse_speed
from tests.server.helpers import LiveServer, recv, refused, run, session
from tests.wire_client import encode_command


@pytest.fixture(scope="module")
def recorded(live: LiveServer, sample_bytes: bytes) -> tuple[str, list[bytes]]:
    data = run(session(live, sample_bytes, max_new_tokens=6, record=True))
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None
    return start.recording, data


async def until_end(ws: ClientConnection) -> list[bytes]:
    out: list[bytes] = []
    while not out or frames.decode(out[-1]).type != "end":
        message = await recv(ws)
        assert isinstance(message, bytes)
        out.append(message)
    return out


def test_a_replay_at_4x_sends_the_recorded_bytes_unchanged(live: LiveServer, recorded: tuple[str, list[bytes]]) -> None:
    name, original = recorded

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=4") as ws:
            return await until_end(ws)

    data = run(scenario())
    assert frames.decode(data[0]) == frames.ReplayFrame(recording=name, steps=6, speed=4.0, paused=False, at=0)
    assert data[1:] == original


def test_seek_continues_from_the_chosen_step(live: LiveServer, recorded: tuple[str, list[bytes]]) -> None:
    name, original = recorded

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=0.25") as ws:
            await ws.send(encode_command("pause"))
            while True:  # steps may arrive before the pause is read
                status = frames.decode(await recv(ws))
                if isinstance(status, frames.ReplayFrame) and status.paused:
                    break
            await ws.send(encode_command("seek", index=3))
            await ws.send(encode_command("speed", value=8.0))
            await ws.send(encode_command("resume"))
            return await until_end(ws)

    data = run(scenario())
    assert [frames.decode(d) for d in data[:3]] == [
        frames.ReplayFrame(recording=name, steps=6, speed=0.25, paused=True, at=3),
        frames.ReplayFrame(recording=name, steps=6, speed=8.0, paused=True, at=3),
        frames.ReplayFrame(recording=name, steps=6, speed=8.0, paused=False, at=3),
    ]
    assert data[3:] == original[4:]  # steps 3, 4, 5 and the end


def test_a_seek_back_after_the_end_replays_the_tail_again(live: LiveServer, recorded: tuple[str, list[bytes]]) -> None:
    name, original = recorded

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8") as ws:
            await until_end(ws)
            await ws.send(encode_command("seek", index=5))
            return await until_end(ws)

    data = run(scenario())
    assert frames.decode(data[0]) == frames.ReplayFrame(recording=name, steps=6, speed=8.0, paused=False, at=5)
    assert data[1:] == original[-2:]


def test_a_bad_replay_command_is_answered_and_the_replay_goes_on(live: LiveServer, recorded: tuple[str, list[bytes]]) -> None:
    name, original = recorded

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8") as ws:
            await ws.send(encode_command("speed", value=20.0))
            return await until_end(ws)

    data = run(scenario())
    errors = [frames.decode(d) for d in data if frames.decode(d).type == "error"]
    assert errors == [frames.ErrorFrame("bad_request", "replay speed must be in 0.25..8; got 20.0")]
    assert [d for d in data if frames.decode(d).type not in ("error", "replay")] == original


@pytest.mark.parametrize(
    ("path", "code", "message", "close"),
    [
        ("..%2Fsecret", "bad_request", "recording id must match [A-Za-z0-9_-]{1,64}; got '../secret'", 4400),
        ("missing", "not_found", "recording 'missing' does not exist", 4404),
        ("x?speed=16", "bad_request", "speed must be in 0.25..8; got 16", 4400),
        ("x?speed=fast", "bad_request", "speed must be a number in 0.25..8; got 'fast'", 4400),
    ],
)
def test_a_bad_replay_request_gets_a_clear_error(live: LiveServer, path: str, code: str, message: str, close: int) -> None:
    error, closed_with, _ = run(refused(f"{live.ws}/ws/replay/{path}"))
    assert error == frames.ErrorFrame(code, message) and closed_with == close


def test_the_replay_clock_schedules_steps_at_recorded_time_over_speed() -> None:
    clock = ReplayClock([100.0, 300.0, 700.0], speed=4.0, now=10.0)
    assert clock.delay(10.0) == 0.025  # 100 ms recorded / 4
    clock.advance()
    assert clock.delay(10.025) == pytest.approx(0.05)
    clock.pause(10.05)
    assert clock.delay(99.0) is None
    clock.resume(20.0)
    assert clock.delay(20.0) == pytest.approx(0.025)
    clock.set_speed(0.5, 20.0)
    assert clock.delay(20.0) == pytest.approx(0.2)
    clock.seek(2, 30.0)
    assert clock.delay(30.0) == 0.0
    clock.advance()
    assert clock.delay(31.0) is None


def test_replay_speeds_are_bounded() -> None:
    assert (parse_speed(None), parse_speed("0.25"), parse_speed("8")) == (1.0, 0.25, 8.0)


def test_a_recording_that_was_cut_replays_its_whole_frames(
    live: LiveServer, recorded: tuple[str, list[bytes]], tmp_path: Any
) -> None:
    name, original = recorded
    whole = b"".join(original)
    cut = live.settings.recordings / "cut.medviz"
    cut.write_bytes(whole[: len(whole) - len(original[-1]) - 10])  # inside the last step
    assert len(read_recording(cut).frames) == len(original) - 2

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/cut?speed=8") as ws:
            out = []
            for _ in range(len(original) - 1):
                out.append(await recv(ws))
            return out

    data = run(scenario())
    assert frames.decode(data[0]) == frames.ReplayFrame(recording="cut", steps=5, speed=8.0, paused=False, at=0)
    assert data[1:] == original[:-2]


def test_a_two_image_session_streams_both_views_records_and_replays_the_same_bytes(
    live: LiveServer, cxr_dir: Any
) -> None:
    pa = (cxr_dir / "nih_00000001_000.png").read_bytes()
    lateral = (cxr_dir / "nih_00027426_000_512.png").read_bytes()
    data = run(session(live, pa, max_new_tokens=4, images=(pa, lateral), labels=("PA", "lateral"), record=True))
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording == start.session
    assert [(i.label, i.size, len(i.positions)) for i in start.images] == [
        ("PA", (1024, 1024), 256), ("lateral", (512, 512), 256)]
    assert start.image_positions == start.images[0].positions + start.images[1].positions
    steps = [frames.decode(d) for d in data[1:-1]]
    assert [s.index for s in steps if isinstance(s, frames.StepFrame)] == [0, 1, 2, 3]
    for step in steps:
        assert isinstance(step, frames.StepFrame)
        assert len(step.images) == 2 and list(step.images[1].maps) == list(start.methods)
        assert step.image_mass == pytest.approx(sum(image.share for image in step.images), abs=1e-6)
    assert all(len(d) < 5000 for d in data[1:-1])
    assert [f.data for f in read_recording(live.settings.recordings / f"{start.recording}.medviz").frames] == data

    async def replay() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{start.recording}?speed=8") as ws:
            return await until_end(ws)

    assert run(replay())[1:] == data
