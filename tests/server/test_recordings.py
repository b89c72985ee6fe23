"""GET /api/recordings, GET and DELETE /api/recordings/{id}: listing, download, delete, id checks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from medviz_core.recording.file import RecordingWriter, read_recording
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest, BoxRequest
from medviz_core.wire.results import AnalysisFrame
from server.settings import Settings
from tests.fixtures.frames import make_fixtures
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import (
    LiveServer,
    kinds,
    receive_all,
    recv,
    run,
    serve,
    session,
    session_of,
    start_bytes,
    until,
)
from tests.wire_client import encode_analyze

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
        "model": "tiny", "preset": "model-card", "labels": [""], "ending": "ended", "question_hidden": False,
    }]}


def test_a_listing_reads_only_new_or_changed_recordings_and_thumbnails_are_small_pngs(
        live: LiveServer, folder: Path) -> None:
    from PIL import Image

    from medviz_core.recording.file import append_frame
    from server.recordings import SUMMARIES

    httpx.get(f"{live.http}/api/recordings")
    reads = SUMMARIES.reads
    httpx.get(f"{live.http}/api/recordings")
    assert SUMMARIES.reads == reads  # nothing changed: every row from memory
    append_frame(folder / "demo_1.medviz", FRAMES["analysis_gradient"])
    httpx.get(f"{live.http}/api/recordings")
    assert SUMMARIES.reads == reads + 1  # the one that grew is read again
    thumb = httpx.get(f"{live.http}/api/recordings/demo_1/thumbnail")
    assert (thumb.status_code, thumb.headers["content-type"]) == (200, "image/png")
    with Image.open(io.BytesIO(thumb.content)) as picture:
        assert max(picture.size) <= 160
    missing = httpx.get(f"{live.http}/api/recordings/nope/thumbnail")
    assert missing.status_code == 404
    assert httpx.get(f"{live.http}/api/recordings/..%2Fsecret/thumbnail").status_code in (400, 404)


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


def test_a_recording_still_being_written_cannot_be_deleted_and_is_readable_by_its_owner_only(
    tiny_engine: Any, tmp_path: Path, sample_bytes: bytes
) -> None:
    engine = GatedEngine(tiny_engine)
    with serve(Settings(model="tiny", recordings=tmp_path / "recordings"), engine) as server:
        async def scenario() -> tuple[httpx.Response, int, list[bytes], httpx.Response, bool]:
            async with connect(f"{server.ws}/ws/session", max_size=None) as owner, \
                    httpx.AsyncClient(base_url=server.http) as http:
                await owner.send(start_bytes(sample_bytes, max_new_tokens=3, question=GATED, record=True))
                first = await recv(owner)
                path = server.settings.recordings / f"{session_of(first)}.medviz"
                await until(path.exists, "the recording is on disk")
                while_live = await http.delete(f"/api/recordings/{path.stem}")
                mode = path.stat().st_mode & 0o777
                engine.gate.set()
                data = [first, *await receive_all(owner)]
                after = await http.delete(f"/api/recordings/{path.stem}")
                return while_live, mode, data, after, path.exists()

        while_live, mode, data, after, still_there = run(scenario())
    name = session_of(data[0])
    assert (while_live.status_code, while_live.json()) == (409, {"error": {"code": "conflict", "message": (
        f"recording {name!r} is still being written by its live session; delete it once the session has ended")}})
    assert mode == 0o600 and kinds(data) == ["start", "step", "step", "step", "end"]
    assert (after.status_code, still_there) == (204, False)


def test_recordings_the_server_writes_are_0600(live: LiveServer, sample_bytes: bytes) -> None:
    name = session_of(run(session(live, sample_bytes, max_new_tokens=1, record=True))[0])
    path = live.settings.recordings / f"{name}.medviz"
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_an_analysis_of_a_recording_with_a_torn_last_frame_is_appended_readably(
    live: LiveServer, sample_bytes: bytes
) -> None:
    name = session_of(run(session(live, sample_bytes, max_new_tokens=3, record=True))[0])
    path = live.settings.recordings / f"{name}.medviz"
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:40])  # a crash mid-frame left a torn tail
    request = AnalyzeRequest("agreement", 1, boxes=(BoxRequest("apex", (10, 10, 100, 100), 0),))

    async def ask() -> None:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            await ws.send(encode_analyze(request))
            while True:
                frame = frames.decode(await recv(ws))
                if isinstance(frame, frames.AnalysisFrame) and frame.status == "done":
                    return

    run(ask())
    recording = read_recording(path)
    assert path.read_bytes().startswith(whole) and path.stat().st_size == len(whole) + len(recording.analyses[0].data)
    assert [f.frame.type for f in recording.frames] == ["start", "step", "step", "step", "end", "analysis"]


def test_300_dicom_exports_from_a_replay_grow_its_recording_by_at_most_its_bound_each_job_once(
    make_server: Any, sample_bytes: bytes
) -> None:
    bound = 2_500_000  # about two exports of the sample (1.2 MB each)
    server = make_server(recording_results_max_bytes=bound)
    name = session_of(run(session(server, sample_bytes, max_new_tokens=2, record=True))[0])
    path = server.settings.recordings / f"{name}.medviz"
    before = path.stat().st_size
    start = read_recording(path).start
    assert start is not None
    asks = [AnalyzeRequest("dicom", n % 2, method=start.methods[n // 2 % 2], id=f"e{n}") for n in range(300)]

    async def export_all() -> list[str]:
        statuses = []
        async with connect(f"{server.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            for ask in asks:
                await ws.send(encode_analyze(ask))
                while True:
                    frame = frames.decode(await recv(ws))
                    if isinstance(frame, AnalysisFrame) and frame.id == ask.id and frame.status != "running" \
                            and frame.status != "queued":
                        statuses.append(frame.status)
                        break
        return statuses

    assert run(export_all()) == ["done"] * 300
    jobs = {(ask.index, ask.method) for ask in asks}
    recorded = read_recording(path).analyses
    assert (len(recorded), len(jobs)) == (2, 4) and path.stat().st_size - before <= bound
    assert len({frame.frame.job for frame in recorded if isinstance(frame.frame, AnalysisFrame)}) == len(recorded)
    assert server.app.state.sessions.analyses.runs == len(jobs)  # a repeat is answered, not computed again


def test_a_finished_recording_gets_a_summary_that_the_listing_reads_instead_of_the_file(
    live: LiveServer, sample_bytes: bytes
) -> None:
    from medviz_core.recording.file import recording_info, summary_path
    from medviz_core.recording.summary import read_summary

    name = session_of(run(session(live, sample_bytes, max_new_tokens=2, record=True))[0])
    path = live.settings.recordings / f"{name}.medviz"
    summary = read_summary(path)
    assert summary is not None and summary.info == recording_info(path) and summary.results == {}
    assert summary_path(path).stat().st_mode & 0o777 == 0o600
    rows = {row["id"]: row for row in httpx.get(f"{live.http}/api/recordings").json()["recordings"]}
    assert rows[name]["size"] == path.stat().st_size and rows[name]["ending"] == "ended"
