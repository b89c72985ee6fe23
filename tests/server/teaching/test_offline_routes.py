"""GET /api/recordings/{id}/player.html: the offline player of a recording, the same bytes `medviz html`
writes, behind the same id checks and guard as the recording's download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from medviz_core.recording.file import RecordingWriter
from server.cli.main import main
from server.settings import Settings
from server.teaching.offline_routes import PLAYERS_AT_ONCE
from tests.fixtures.frames import make_fixtures
from tests.server.helpers import LiveServer, serve

FRAMES = make_fixtures.build()


@pytest.fixture
def folder(live: LiveServer) -> Path:
    folder = live.settings.recordings
    (folder / "demo_1.medviz").unlink(missing_ok=True)
    with RecordingWriter(folder / "demo_1.medviz") as writer:
        for name in ("start", "step", "end"):
            writer.write(FRAMES[name])
    return folder


def test_the_player_downloads_as_the_html_file_medviz_html_writes(live: LiveServer, folder: Path,
                                                                  tmp_path: Path) -> None:
    response = httpx.get(f"{live.http}/api/recordings/demo_1/player.html")
    assert main(["html", str(folder / "demo_1.medviz"), "--out", str(tmp_path / "demo_1.html")]) == 0
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="demo_1.html"'
    assert response.content == (tmp_path / "demo_1.html").read_bytes()


def test_the_player_of_a_missing_recording_or_a_bad_id_is_refused(live: LiveServer, folder: Path) -> None:
    missing = httpx.get(f"{live.http}/api/recordings/nope/player.html")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "recording 'nope' does not exist"}}
    assert httpx.get(f"{live.http}/api/recordings/..%2Fsecret/player.html").status_code == 400


def test_the_player_needs_the_servers_token(tiny_engine: Any, tmp_path: Path) -> None:
    settings = Settings(model="tiny", recordings=tmp_path / "recordings", token="teaching-token")
    settings.recordings.mkdir(mode=0o700)
    with RecordingWriter(settings.recordings / "demo_1.medviz") as writer:
        for name in ("start", "step", "end"):
            writer.write(FRAMES[name])
    with serve(settings, tiny_engine) as server:
        assert httpx.get(f"{server.http}/api/recordings/demo_1/player.html").status_code == 401
        allowed = httpx.get(f"{server.http}/api/recordings/demo_1/player.html?token=teaching-token")
        assert allowed.status_code == 200


def test_a_player_asked_while_as_many_as_allowed_are_built_is_refused_as_busy(live: LiveServer,
                                                                               folder: Path) -> None:
    slots = live.app.state.players
    for _ in range(PLAYERS_AT_ONCE):  # as if that many pages were being built now
        assert slots.acquire(blocking=False)
    try:
        busy = httpx.get(f"{live.http}/api/recordings/demo_1/player.html")
    finally:
        for _ in range(PLAYERS_AT_ONCE):
            slots.release()
    assert (busy.status_code, busy.json()) == (503, {"error": {
        "code": "busy", "message": "2 offline players are being built; try again in a moment"}})
    assert httpx.get(f"{live.http}/api/recordings/demo_1/player.html").status_code == 200  # a slot is free again
