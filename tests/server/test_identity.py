"""Patient identity on a real server: a DICOM that names its patient, recorded by default, leaves none of its
identifying values or original UIDs in the recording, its sidecar, the log or any answer a watcher or a replay
viewer gets; only the session's owner gets an identified export; a server that keeps identity (a clinical
archive) records it, and still gives replay viewers de-identified exports; BurnedInAnnotation YES is refused."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from websockets.asyncio.client import connect

from medviz_core.recording.file import read_recording, recording_path, summary_path
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame, DicomResult
from tests.identified import IDENTITY, UIDS, header_of, identified_dicom, leaks
from tests.server.helpers import LiveServer, receive_all, recv, run, session, start_bytes
from tests.server.test_study_analyses import answers
from tests.wire_client import encode_analyze

EXPORT = AnalyzeRequest("dicom", 0, method="consensus", id="export")


def recorded_session(server: LiveServer, image: bytes) -> str:
    """A recorded session of 3 tokens on `image`, to its end; its recording id."""
    data = run(session(server, image, max_new_tokens=3, record=True))
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None, frames.decode(data[-1])
    return start.recording


def export_of(answer: Any) -> bytes:
    assert isinstance(answer, AnalysisFrame) and isinstance(answer.result, DicomResult), answer
    return answer.result.zip


def exported_headers(zipped: bytes) -> list[pydicom.Dataset]:
    archive = zipfile.ZipFile(io.BytesIO(zipped))
    return [pydicom.dcmread(io.BytesIO(archive.read(name))) for name in archive.namelist()]


def replay_frames(server: LiveServer, recording: str, ask: AnalyzeRequest | None = None) -> list[bytes]:
    """Every frame a replay viewer gets (to the end at 8x), and the answer to `ask` if given."""
    async def scenario() -> list[bytes]:
        out: list[bytes] = []
        async with connect(f"{server.ws}/ws/replay/{recording}?speed=8", max_size=None) as ws:
            if ask is not None:
                await ws.send(encode_analyze(ask))
            answered, ended = ask is None, False
            while not (answered and ended):
                out.append(await recv(ws))
                last = frames.decode(out[-1])
                ended = ended or last.type == "end"
                answered = answered or (isinstance(last, AnalysisFrame) and last.id == ask.id and last.status == "done")
        return out

    return run(scenario())


def owner_and_watcher_exports(server: LiveServer, image: bytes) -> tuple[bytes, bytes, str, list[bytes]]:
    """A recorded session whose owner and a watcher each ask for token 0's export: (the owner's zip, the watcher's
    zip, the recording id, every frame the watcher got)."""
    async def scenario() -> tuple[bytes, bytes, str, list[bytes]]:
        async with connect(f"{server.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(image, 3, record=True))
            start = frames.decode(await recv(owner))
            assert isinstance(start, frames.StartFrame) and start.recording is not None
            while not isinstance(frames.decode(await recv(owner)), frames.StepFrame):
                pass
            await owner.send(encode_analyze(EXPORT))
            mine = await answers(owner, {EXPORT.id})
            async with connect(f"{server.ws}/ws/watch/{start.session}?stay=1", max_size=None) as watcher:
                watched = [await recv(watcher)]
                while not isinstance(frames.decode(watched[-1]), frames.StepFrame):
                    watched.append(await recv(watcher))
                await watcher.send(encode_analyze(EXPORT))
                theirs = await answers(watcher, {EXPORT.id})
            await receive_all(owner)
        return export_of(mine[EXPORT.id]), export_of(theirs[EXPORT.id]), start.recording, watched

    return run(scenario())


@pytest.fixture(scope="module")
def identified(cxr_dir: Path) -> bytes:
    return identified_dicom(cxr_dir)


def test_a_recorded_session_leaves_no_identity_in_its_recording_its_sidecar_or_the_log(
        live: LiveServer, identified: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    recording = recorded_session(live, identified)
    path = recording_path(live.settings.recordings, recording)
    assert leaks(path.read_bytes()) == []
    assert leaks(summary_path(path).read_bytes()) == []
    assert leaks(caplog.text.encode()) == []
    source = read_recording(path).source
    assert source is not None and source.headers[0] is not None
    assert header_of(source.headers[0]).PatientIdentityRemoved == "YES"


def test_only_the_owner_gets_an_identified_export_and_the_watchers_matches_the_recording(
        live: LiveServer, identified: bytes) -> None:
    mine, theirs, recording, watched = owner_and_watcher_exports(live, identified)
    assert {h.PatientID for h in exported_headers(mine)} == {IDENTITY["PatientID"]}
    assert {h.StudyInstanceUID for h in exported_headers(mine)} == {UIDS["StudyInstanceUID"]}
    assert [leaks(d) for d in watched if leaks(d)] == []
    recorded = read_recording(recording_path(live.settings.recordings, recording))
    assert recorded.source is not None and recorded.source.headers[0] is not None
    study = header_of(recorded.source.headers[0]).StudyInstanceUID
    assert {(h.StudyInstanceUID, h.PatientIdentityRemoved) for h in exported_headers(theirs)} == {(study, "YES")}
    assert [f.frame.kind for f in recorded.analyses] == ["dicom"]  # the watcher's: the owner's is never appended
    assert leaks(recording_path(live.settings.recordings, recording).read_bytes()) == []


def test_a_replay_viewer_gets_no_identity_in_any_frame_nor_in_its_export(live: LiveServer, identified: bytes) -> None:
    recording = recorded_session(live, identified)
    sent = replay_frames(live, recording, EXPORT)
    assert [leaks(d) for d in sent if leaks(d)] == []
    exports = [f for f in map(frames.decode, sent) if isinstance(f, AnalysisFrame) and f.status == "done"]
    assert [h.PatientIdentityRemoved for h in exported_headers(export_of(exports[0]))] == ["YES"] * 4


def test_the_recordings_list_shows_a_question_only_to_a_request_that_may_replay_it(
        live: LiveServer, identified: bytes) -> None:
    data = run(session(live, identified, max_new_tokens=2, record=True, question="Is Jane Doe's heart enlarged?"))
    recording = frames.decode(data[0]).recording  # type: ignore[union-attr]

    def row(**headers: str) -> dict[str, Any]:
        listing = httpx.get(f"{live.http}/api/recordings", headers=headers).json()["recordings"]
        return next(r for r in listing if r["id"] == recording)

    assert (row()["question"], row()["question_hidden"]) == ("Is Jane Doe's heart enlarged?", False)
    assert row(Origin=live.http)["question"] == "Is Jane Doe's heart enlarged?"
    assert (row(Origin="https://elsewhere.example")["question"],
            row(Origin="https://elsewhere.example")["question_hidden"]) == (None, True)


def test_a_server_that_keeps_identity_records_it_but_replay_viewers_still_get_none(
        make_server: Callable[..., LiveServer], identified: bytes) -> None:
    archive = make_server(recordings_keep_identity=True)
    mine, theirs, recording, watched = owner_and_watcher_exports(archive, identified)
    path = recording_path(archive.settings.recordings, recording)
    assert set(leaks(path.read_bytes())) >= {IDENTITY["PatientID"], UIDS["StudyInstanceUID"]}
    assert {h.PatientID for h in exported_headers(mine)} == {IDENTITY["PatientID"]}
    assert leaks(theirs) == [] and [leaks(d) for d in watched if leaks(d)] == []
    assert leaks(httpx.get(f"{archive.http}/api/recordings/{recording}").content) != []  # the archive's own download
    sent = replay_frames(archive, recording, EXPORT)
    assert [leaks(d) for d in sent if leaks(d)] == []


def test_a_de_identifying_server_refuses_to_hand_out_an_identified_recording(
        make_server: Callable[..., LiveServer], identified: bytes) -> None:
    archive = make_server(recordings_keep_identity=True)
    recording = recorded_session(archive, identified)
    teaching = make_server()  # the same recordings folder, de-identifying
    answer = httpx.get(f"{teaching.http}/api/recordings/{recording}")
    assert (answer.status_code, answer.json()["error"]["message"]) == (409, (
        f"recording {recording!r} holds the patient's identity and this server de-identifies recordings; make a "
        "teaching copy with `medviz deidentify` and offer that"))
    assert leaks(answer.content) == []


def test_a_burned_in_annotation_is_refused_for_a_deidentified_recording_with_one_line(
        live: LiveServer, make_server: Callable[..., LiveServer], cxr_dir: Path) -> None:
    burned = identified_dicom(cxr_dir, BurnedInAnnotation="YES")
    data = run(session(live, burned, max_new_tokens=2, record=True))
    assert [frames.decode(d) for d in data] == [frames.ErrorFrame("bad_image", (
        "image 1 says BurnedInAnnotation (0028,0301) = YES: text drawn into its pixels may name the patient, and "
        "de-identifying the header cannot remove it; pass the server setting allow_burned_in=true to record it "
        "anyway"))]
    assert frames.decode(run(session(live, burned, max_new_tokens=2))[-1]).type == "end"  # not recorded: nothing kept
    allowed = make_server(allow_burned_in=True)
    assert leaks(recording_path(allowed.settings.recordings, recorded_session(allowed, burned)).read_bytes()) == []
