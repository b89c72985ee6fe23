"""The offline player's page (server/teaching/offline_player.py): the frames it carries are the replay socket's, in its
order, and each module's relative imports name the import map's entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from medviz_core.errors import RequestError
from medviz_core.recording.file import RecordingWriter, read_recording
from medviz_core.wire.results import AnalysisFrame, DicomResult
from server.settings import WEB_DIR
from server.teaching.offline_player import replay_frames, rewritten
from tests.fixtures.frames import make_fixtures

FRAMES = make_fixtures.build()


def test_each_step_is_followed_by_the_finished_results_about_its_token_and_the_end_comes_last(tmp_path: Path) -> None:
    path = tmp_path / "session.medviz"
    written = ["start", "analysis_gradient", *["step"] * 8, "analysis_queued", "step_special", "end"]
    with RecordingWriter(path) as writer:  # the results are about token 7 and 8: the 8th and 9th step
        for name in written:
            writer.write(FRAMES[name])
    sent = replay_frames(read_recording(path))
    assert sent[-4:] == [FRAMES["step"], FRAMES["analysis_gradient"], FRAMES["step_special"], FRAMES["end"]]
    assert sent[:2] == [FRAMES["start"], FRAMES["step"]] and len(sent) == 12
    assert FRAMES["analysis_queued"] not in sent  # an unfinished result is not replayed


def test_an_empty_recording_has_nothing_to_play(tmp_path: Path) -> None:
    path = tmp_path / "empty.medviz"
    path.write_bytes(b"")
    with pytest.raises(RequestError, match="^the recording is empty: it holds no frame to play$"):
        replay_frames(read_recording(path))


def test_a_modules_relative_imports_name_the_import_maps_entries() -> None:
    source = rewritten(WEB_DIR.resolve(), (WEB_DIR / "js" / "views" / "player.js").resolve())
    assert 'import("medviz/js/state.js")' in source
    assert "../" not in source


def test_a_recorded_dicom_export_is_never_carried_because_it_may_copy_the_patients_identity(tmp_path: Path) -> None:
    path = tmp_path / "session.medviz"
    export = AnalysisFrame("dicom-7-0a1b", "dicom", 7, "done", result=DicomResult(b"PK-zip", ("a.dcm",), ())).to_wire()
    with RecordingWriter(path) as writer:
        for frame in (FRAMES["start"], *[FRAMES["step"]] * 8, FRAMES["analysis_gradient"], export, FRAMES["end"]):
            writer.write(frame)
    sent = replay_frames(read_recording(path))
    assert (export in sent, FRAMES["analysis_gradient"] in sent, len(sent)) == (False, True, 11)
