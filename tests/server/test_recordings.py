"""GET /api/recordings, GET and DELETE /api/recordings/{id}: listing, download, delete, id checks."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from medviz_core.recording import RecordingWriter
from tests.fixtures.frames import make_fixtures

from .helpers import LiveServer

FRAMES = make_fixtures.build()
BAD_ID = "recording id must match [A-Za-z0-9_-]{1,64}; got '../secret'"


@pytest.fixture
def folder(live: LiveServer) -> Path:
    folder = live.settings.recordings
    for path in folder.glob("*.medviz"):
        path.unlink()
    with RecordingWriter(folder / "demo_1.medviz") as writer:
        for name in ("start", "step", "end"):
            writer.write(FRAMES[name])
    (folder.parent / "secret.medviz").write_bytes(b"outside the recordings folder")
    return folder


def test_recordings_are_listed_with_their_metadata(live: LiveServer, folder: Path) -> None:
    listing = httpx.get(f"{live.http}/api/recordings").json()
    assert listing == {"recordings": [{
        "id": "demo_1", "created": 1764400000.5, "question": "Is there an effusion?", "tokens": 9,
        "finished": True, "size": len(FRAMES["start"]) + len(FRAMES["step"]) + len(FRAMES["end"]),
    }]}


def test_a_recording_downloads_byte_for_byte(live: LiveServer, folder: Path) -> None:
    response = httpx.get(f"{live.http}/api/recordings/demo_1")
    assert response.status_code == 200
    assert response.content == FRAMES["start"] + FRAMES["step"] + FRAMES["end"]
    assert response.headers["content-disposition"] == 'attachment; filename="demo_1.medviz"'


def test_a_deleted_recording_is_gone(live: LiveServer, folder: Path) -> None:
    assert httpx.delete(f"{live.http}/api/recordings/demo_1").status_code == 204
    missing = httpx.delete(f"{live.http}/api/recordings/demo_1")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "recording 'demo_1' does not exist"}}
    assert httpx.get(f"{live.http}/api/recordings/demo_1").status_code == 404


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_recording_id_with_a_path_trick_is_refused(live: LiveServer, folder: Path, method: str) -> None:
    response = httpx.request(method, f"{live.http}/api/recordings/..%2Fsecret")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "bad_request", "message": BAD_ID}}
    assert (folder.parent / "secret.medviz").exists()
