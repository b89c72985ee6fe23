"""Send to PACS from the browser only for a study the server itself opened from its PACS (issue 26, second review):
an uploaded DICOM, even the very file the PACS holds (its UIDs, its patient), is refused live and from its recording's
replay before the PACS is asked; a session opened from the PACS carries the source frame's `from_pacs` mark into
its recording (de-identified or not) and is sent live and from its replay; an older recording without the mark reads
as not from the PACS; `medviz record --pacs` marks what it retrieved, never files it was given. On a real Orthanc and the tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from medviz_core.recording.file import RecordingWriter, read_recording, recording_path
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import PacsPick, ParamsRequest, StartRequest
from server.cli.main import main
from server.pacs.pinned import DEIDENTIFIED, NOT_FROM_PACS
from tests.orthanc import Orthanc
from tests.pacs.conftest import PacsStudy
from tests.pacs.test_cli import credentials
from tests.server.helpers import LiveServer, receive_all, recv, run
from tests.server.pacs.conftest import OPERATOR
from tests.server.pacs.test_pacs_routes import get, post
from tests.server.pacs.test_pacs_start import owned_session


def uploaded_session(server: LiveServer, dicom: bytes) -> tuple[frames.OwnerFrame, str | None]:
    """A recorded session on an uploaded DICOM with an owner key, run to its end: the owner frame and its recording."""
    async def scenario() -> tuple[frames.OwnerFrame, str | None]:
        async with connect(f"{server.ws}/ws/session?rejoin=1", max_size=None, additional_headers=OPERATOR) as ws:
            await ws.send(StartRequest(images=(dicom,), params=ParamsRequest(max_new_tokens=3), record=True).to_wire())
            owner = frames.decode(await recv(ws))
            assert isinstance(owner, frames.OwnerFrame), owner
            start = frames.decode((await receive_all(ws))[0])
            assert isinstance(start, frames.StartFrame), start
            return owner, start.recording

    return run(scenario())


def opened_from_pacs(server: LiveServer, study: PacsStudy) -> tuple[frames.OwnerFrame, str]:
    """A recorded session opened from the PACS with an owner key, run to its end: the owner frame and its recording."""
    owner, data = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)), record=True)
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None, start
    return owner, start.recording


def recorded_source(server: LiveServer, recording: str) -> frames.SourceFrame:
    found = [f.frame for f in read_recording(recording_path(server.settings.recordings, recording)).frames
             if isinstance(f.frame, frames.SourceFrame)]
    assert len(found) == 1, found
    return found[0]


def test_an_uploaded_copy_of_a_study_in_the_pacs_is_refused_live_and_from_its_replay_and_nothing_is_stored(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-UPLOADED", "ACC-P3-20")
    server = pacs_server(recordings_keep_identity=True)
    owner, recording = uploaded_session(server, study.dicom)  # the PACS's own file: its UIDs and its patient
    assert recording is not None and recorded_source(server, recording).from_pacs is False
    live = post(server, {"session": owner.session, "key": owner.key, "index": 0, "method": "consensus"})
    assert (live.status_code, live.json()["error"]["message"]) == (400, NOT_FROM_PACS)
    assert get(server, f"/api/pacs/sendable?recording={recording}").json() == {"ok": False, "why": NOT_FROM_PACS}
    replayed = post(server, {"recording": recording, "index": 0, "method": "consensus"})
    assert (replayed.status_code, replayed.json()["error"]["message"]) == (400, NOT_FROM_PACS)
    assert len(orthanc.study_series(study.study_uid)) == 1  # the source's series alone


def test_a_session_opened_from_the_pacs_is_sent_live_and_its_recordings_replay_is_sent_too(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-OPENED", "ACC-P3-21")
    server = pacs_server(recordings_keep_identity=True)
    owner, recording = opened_from_pacs(server, study)
    source = recorded_source(server, recording)
    assert (source.deidentified, source.from_pacs) == (False, True)
    live = post(server, {"session": owner.session, "key": owner.key, "index": 0, "method": "consensus"}).json()
    assert live["message"] == "sent 4 objects into the study"
    assert get(server, f"/api/pacs/sendable?recording={recording}").json() == {"ok": True, "why": ""}
    replayed = post(server, {"recording": recording, "index": 1, "method": "consensus"}).json()
    assert replayed["message"] == "sent 4 objects into the study"
    assert len(orthanc.study_series(study.study_uid)) == 9  # the source's, then four series per sent token


def test_a_recording_written_de_identified_keeps_the_mark_and_says_it_is_de_identified(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-OPENED-HIDDEN", "ACC-P3-22")
    server = pacs_server()
    _, recording = opened_from_pacs(server, study)
    source = recorded_source(server, recording)
    assert (source.deidentified, source.from_pacs) == (True, True)
    assert get(server, f"/api/pacs/sendable?recording={recording}").json() == {"ok": False, "why": DEIDENTIFIED}


def older(path: Path, copy: Path) -> None:
    """`path` rewritten as a recording made before the mark: its source frame without `from_pacs`."""
    with RecordingWriter(copy) as writer:
        for recorded in read_recording(path).frames:
            frame = recorded.frame
            writer.write(frames.SourceFrame(frame.headers).to_wire() if isinstance(frame, frames.SourceFrame)
                         else recorded.data)


def test_an_older_recording_without_the_mark_reads_as_not_from_the_pacs(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-OLDER", "ACC-P3-23")
    server = pacs_server(recordings_keep_identity=True)
    _, recording = opened_from_pacs(server, study)
    folder = server.settings.recordings
    older(recording_path(folder, recording), recording_path(folder, "older-recording"))
    assert recorded_source(server, "older-recording").from_pacs is False
    assert get(server, "/api/pacs/sendable?recording=older-recording").json() == {"ok": False, "why": NOT_FROM_PACS}
    refused = post(server, {"recording": "older-recording", "index": 0, "method": "consensus"})
    assert (refused.status_code, refused.json()["error"]["message"]) == (400, NOT_FROM_PACS)
    assert len(orthanc.study_series(study.study_uid)) == 1


def test_medviz_record_marks_a_study_it_retrieved_from_the_pacs_and_never_files_it_was_given(
        orthanc: Orthanc, stored_study: Callable[..., PacsStudy], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    study = stored_study("P3-RECORDED", "ACC-P3-24")
    given = tmp_path / "given.dcm"
    given.write_bytes(study.dicom)
    retrieved, uploaded = tmp_path / "retrieved.medviz", tmp_path / "uploaded.medviz"
    common = ["--model", "tiny", "--max-new-tokens", "2", "--keep-identity"]
    assert main(["record", "--pacs", orthanc.dicomweb, "--study", study.study_uid, *credentials(orthanc),
                 "--out", str(retrieved), *common]) == 0
    assert main(["record", str(given), "--out", str(uploaded), *common]) == 0
    capsys.readouterr()
    marks = [[f.frame.from_pacs for f in read_recording(path).frames if isinstance(f.frame, frames.SourceFrame)]
             for path in (retrieved, uploaded)]
    assert marks == [[True], [False]]
