"""A recordings disk that refuses a write ends that session only: its error frame names the cause, its socket
closes, the next session (recorded or not) and replays are served, and /api/health says so until a write
succeeds. Nothing is mounted: the worker's recordings go to /dev/full once their room is used (tests/disk.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from tests.disk import FullDisk
from tests.fixtures.frames import make_fixtures
from tests.server.helpers import LiveServer, kinds, receive_all, recv, run, session, start_bytes

FRAMES = make_fixtures.build()
FULL = "the recordings disk is full"


def recorded_session(server: LiveServer, image: bytes) -> tuple[list[bytes], int | None, str]:
    async def scenario() -> tuple[list[bytes], int | None, str]:
        async with connect(f"{server.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(image, 4, record=True))
            data = await receive_all(ws)
        return data, ws.close_code, ws.close_reason or ""

    return run(scenario())


def health(server: LiveServer) -> tuple[str, str | None]:
    body = httpx.get(f"{server.http}/api/health").json()
    return body["recordings"], body["recordings_reason"]


@pytest.mark.parametrize(("disk", "sent"), [
    (FullDisk(room=0), []),  # the start frame itself cannot be written
    (FullDisk(room=len(FRAMES["start"]) * 3), None),  # full somewhere among the steps
    (FullDisk(at_close=True), None),  # every step written, the close refused: no end frame goes out
], ids=["at open", "mid-session", "at close"])
def test_a_full_disk_ends_that_session_with_the_disk_named_and_the_next_sessions_run(
    make_server: Callable[..., LiveServer], sample_bytes: bytes, disk: FullDisk, sent: list[str] | None
) -> None:
    server = make_server()
    server.app.state.sessions.worker.open_recording = disk
    data, code, reason = recorded_session(server, sample_bytes)
    error = frames.decode(data[-1])
    assert isinstance(error, frames.ErrorFrame) and error.code == "internal"
    name = disk.opened[0].stem
    assert error.message == (f"{FULL}: recording {name} could not be written, so the session was stopped; start "
                             "it again without recording, or once the disk is fixed")
    assert (code, reason) == (4500, error.message[:123])
    assert "end" not in kinds(data) and (sent is None or kinds(data)[:-1] == sent)
    assert health(server) == ("unwritable", FULL)
    assert kinds(run(session(server, sample_bytes, max_new_tokens=2)))[-1] == "end"  # unrecorded: served
    assert health(server) == ("unwritable", FULL)  # until a recording is written again

    server.app.state.sessions.worker.open_recording = FullDisk(room=1 << 30)  # room again
    data, code, _ = recorded_session(server, sample_bytes)
    assert (kinds(data)[-1], code) == ("end", 1000)
    assert health(server) == ("ok", None)


def test_below_the_free_space_floor_a_recorded_session_is_refused_and_others_are_served(
    make_server: Callable[..., LiveServer], sample_bytes: bytes
) -> None:
    server = make_server(recordings_min_free_mb=10**9)
    data, code, _ = recorded_session(server, sample_bytes)
    assert len(data) == 1 and code == 4500
    error = frames.decode(data[0])
    assert isinstance(error, frames.ErrorFrame) and error.message.startswith("the recordings disk has ")
    assert error.message.endswith("MB free, below the 1000000000 MB this server keeps free (recordings_min_free_mb): "
                                  f"recording {error.message.split('recording ')[1].split()[0]} was not started, so "
                                  "neither was the session; start it without recording, or once there is room")
    state, why = health(server)
    assert state == "unwritable" and why is not None and why.endswith("(recordings_min_free_mb)")
    assert kinds(run(session(server, sample_bytes, max_new_tokens=2)))[-1] == "end"
    assert list(server.settings.recordings.glob("*.medviz")) == []


def test_a_recordings_folder_found_looser_is_tightened_when_the_server_starts(
    make_server: Callable[..., LiveServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    folder.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="medviz.recording"):
        make_server()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert f"the recordings folder {folder} was mode 0755; tightened it to 0700" in caplog.text


def test_a_replay_of_a_recording_damaged_in_the_middle_says_where_it_stops(
    make_server: Callable[..., LiveServer], sample_bytes: bytes
) -> None:
    server = make_server()
    data, _, _ = recorded_session(server, sample_bytes)
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None
    path = server.settings.recordings / f"{start.recording}.medviz"
    recording = read_recording(path)
    damaged_at = recording.steps[1].offset
    raw = bytearray(path.read_bytes())
    raw[damaged_at] = 0xC1  # not msgpack
    path.write_bytes(bytes(raw))

    async def replay() -> list[Any]:
        async with connect(f"{server.ws}/ws/replay/{start.recording}?speed=8", max_size=None) as ws:
            got = [frames.decode(await recv(ws)) for _ in range(4)]  # status, start, step 0, the note
        return got

    got = run(replay())
    assert [f.type for f in got] == ["replay", "start", "step", "error"]
    assert got[-1] == frames.ErrorFrame("bad_frame", f"recording {start.recording!r} is damaged at byte {damaged_at} "
                                        f"of {len(raw)}: the replay stops after step 1 of what was recorded")
    assert path.read_bytes() == bytes(raw)
