"""The analyses of a study's maps: the biplanar 3D volume of a PA + lateral token, and a token's DICOM export,
asked over a live session's or a replay's socket, answered with the request's id; and a v1 recording replays
as v2 frames with its recorded tokens and map bytes."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from websockets.asyncio.client import ClientConnection, connect

from medviz_core.analyses.biplanar import biplanar_volume
from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame, DicomResult, VolumeResult
from tests.server.helpers import LiveServer, receive_all, recv, run, session
from tests.wire_client import encode_analyze

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


async def answers(ws: ClientConnection, request_ids: set[str]) -> dict[str, Any]:
    """Frames until every request id has its final answer; the final frame per id."""
    final: dict[str, Any] = {}
    while set(final) != request_ids:
        frame = frames.decode(await recv(ws))
        if isinstance(frame, (AnalysisFrame, frames.ErrorFrame)) and frame.id in request_ids:
            if isinstance(frame, frames.ErrorFrame) or frame.status in ("done", "cancelled", "error"):
                final[frame.id] = frame
    return final


def replay_answer(live: LiveServer, recording: str, request: AnalyzeRequest) -> Any:
    """The final answer to one analysis request asked over a replay of `recording`."""
    async def scenario() -> dict[str, Any]:
        async with connect(f"{live.ws}/ws/replay/{recording}?speed=8", max_size=None) as ws:
            await ws.send(encode_analyze(request))
            return await answers(ws, {request.id})

    return run(scenario())[request.id]


@pytest.fixture(scope="module")
def two_views(live: LiveServer, cxr_dir: Path) -> str:
    images = [(cxr_dir / "nih_00000001_000.png").read_bytes(), (cxr_dir / "nih_00027426_000_512.png").read_bytes()]
    data = run(session(live, None, max_new_tokens=4, record=True, images=images, labels=["PA", "lateral"]))
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None
    return start.recording


def test_the_3d_volume_of_a_token_is_the_product_of_its_frontal_and_lateral_maps(live: LiveServer,
                                                                                 two_views: str) -> None:
    answer = replay_answer(live, two_views, AnalyzeRequest("volume", 2, method="rollout", id="vol-2"))
    assert isinstance(answer, AnalysisFrame) and answer.status == "done" and isinstance(answer.result, VolumeResult)
    result = answer.result
    recording = read_recording(live.settings.recordings / f"{two_views}.medviz")
    step = recording.steps[2].frame
    assert isinstance(step, frames.StepFrame)
    expected = biplanar_volume(step.images[0].values("rollout", (16, 16)), step.images[1].values("rollout", (16, 16)))
    assert (result.size, result.frontal, result.lateral, result.peak) == (16, 0, 1, expected.peak)
    got = result.volume.values((16, 16, 16))
    assert np.abs(got - expected.values).max() <= 0.5 / 255 + 1e-6


def test_a_3d_view_of_a_one_image_session_is_refused_with_the_requests_id(live: LiveServer,
                                                                           sample_bytes: bytes) -> None:
    data = run(session(live, sample_bytes, max_new_tokens=2, record=True))
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None
    refusal = replay_answer(live, start.recording, AnalyzeRequest("volume", 0, method="consensus", id="v"))
    assert refusal == frames.ErrorFrame("bad_request", "a 3D view needs one frontal (PA or AP) and one lateral image, "
                                        "by their labels; this recording's labels are ['']", "v")


def test_a_dicom_export_of_a_dicom_sessions_token_references_its_source(live: LiveServer, cxr_dir: Path) -> None:
    source = (cxr_dir / "nih_00000002_000_dx.dcm").read_bytes()

    async def scenario() -> dict[str, Any]:
        async with connect(f"{live.ws}/ws/session", max_size=None) as ws:
            from tests.wire_client import start_request

            await ws.send(start_request(source, max_new_tokens=3).to_wire())
            while not isinstance(frames.decode(await recv(ws)), frames.StepFrame):
                pass
            await ws.send(encode_analyze(AnalyzeRequest("dicom", 0, method="consensus", id="export")))
            found = await answers(ws, {"export"})
            await receive_all(ws)  # to its end: the next test's session must not wait behind this one
            return found

    answer = run(scenario())["export"]
    assert isinstance(answer, AnalysisFrame) and isinstance(answer.result, DicomResult)
    archive = zipfile.ZipFile(io.BytesIO(answer.result.zip))
    assert sorted(name.rsplit("_", 2)[-2] for name in archive.namelist()) == ["map", "outlines", "overlay", "regions"]
    original = pydicom.dcmread(io.BytesIO(source), stop_before_pixels=True)
    for name in archive.namelist():
        exported = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert exported.StudyInstanceUID == original.StudyInstanceUID
        assert exported.PatientID == original.PatientID
        assert exported.SOPInstanceUID != original.SOPInstanceUID


def test_viewers_never_receive_the_source_dicom_header(live: LiveServer, cxr_dir: Path) -> None:
    source = (cxr_dir / "nih_00000002_000_dx.dcm").read_bytes()
    data = run(session(live, source, max_new_tokens=2, record=True))
    assert [frames.decode(d).type for d in data] == ["start", "step", "step", "end"]
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None
    recording = read_recording(live.settings.recordings / f"{start.recording}.medviz")
    assert recording.source is not None and recording.source.headers[0] is not None
    header = pydicom.dcmread(io.BytesIO(recording.source.headers[0]))
    original = pydicom.dcmread(io.BytesIO(source))
    assert "PixelData" not in header and header.SOPClassUID == original.SOPClassUID
    # recorded de-identified (docs/deidentification.md): a new SOP Instance UID, no patient ID
    assert (header.PatientIdentityRemoved, header.PatientID) == ("YES", "ANONYMIZED")
    assert header.SOPInstanceUID != original.SOPInstanceUID


def test_a_version_1_recording_replays_as_v2_frames_with_its_tokens_and_map_bytes(live: LiveServer) -> None:
    shutil.copy(FIXTURES / "v1_study.medviz", live.settings.recordings / "v1_study.medviz")
    recorded = read_recording(FIXTURES / "v1_study.medviz")

    async def scenario() -> list[bytes]:
        out: list[bytes] = []
        async with connect(f"{live.ws}/ws/replay/v1_study?speed=8", max_size=None) as ws:
            while not out or frames.decode(out[-1]).type != "end":
                out.append(await recv(ws))
        return out

    sent = [frames.decode(d) for d in run(scenario())]
    assert all(msgpack_version(d) == 2 for d in run(scenario()))
    steps = [f for f in sent if isinstance(f, frames.StepFrame)]
    assert [s.text for s in steps] == [r.frame.text for r in recorded.steps]
    first = recorded.steps[0].frame
    assert isinstance(first, frames.StepFrame)
    assert [image.maps["consensus"].u8 for image in steps[0].images] == [
        image.maps["consensus"].u8 for image in first.images]
    start = next(f for f in sent if isinstance(f, frames.StartFrame))
    assert [image.label for image in start.images] == ["PA", "lateral"] and start.preset == "medviz"


def msgpack_version(data: bytes) -> int:
    import msgpack

    version: int = msgpack.unpackb(data)["v"]
    return version


def test_a_dicom_export_of_a_study_holds_every_images_objects_named_by_its_label(live: LiveServer,
                                                                                 two_views: str) -> None:
    answer = replay_answer(live, two_views, AnalyzeRequest("dicom", 1, method="rollout", id="both"))
    assert isinstance(answer, AnalysisFrame) and isinstance(answer.result, DicomResult)
    archive = zipfile.ZipFile(io.BytesIO(answer.result.zip))
    assert list(answer.result.names) == archive.namelist()
    assert [(name.split("_")[0], name.rsplit("_", 2)[-2]) for name in archive.namelist()] == [
        ("image1-PA", "overlay"), ("image2-lateral", "overlay")]  # PNG sources: a Secondary Capture each
    recording = read_recording(live.settings.recordings / f"{two_views}.medviz")
    start = recording.start
    for name, info in zip(archive.namelist(), start.images):
        exported = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert (exported.Columns, exported.Rows) == info.size
    assert all(note.startswith(("image1-PA: ", "image2-lateral: ")) for note in answer.result.notes)
    assert len(answer.result.notes) == 2 * len({note.split(": ", 1)[1] for note in answer.result.notes})
