"""recording.recording_info: what the recordings list shows (model, preset, labels, how the session
ended), read from the start and end frames only, and the first image for a thumbnail."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from medviz_core.errors import ProtocolError
from medviz_core.recording.file import first_image, iter_types, list_recordings, recording_info
from medviz_core.wire import server_frames as frames
from tests.fixtures.frames import make_fixtures
from tests.recording.test_recording import write

FRAMES = make_fixtures.build()
ERROR_END = frames.EndFrame("error", 1, "x", 1.0, 2.0, "the model failed", {}).to_wire()


def test_each_recording_says_its_model_preset_labels_and_how_it_ended(tmp_path: Path) -> None:
    write(tmp_path / "normal.medviz", [FRAMES["start"], FRAMES["step"], FRAMES["end"]])
    write(tmp_path / "stopped.medviz", [FRAMES["start"], FRAMES["step"], FRAMES["end_cancelled"]])
    write(tmp_path / "failed.medviz", [FRAMES["start"], FRAMES["step"], ERROR_END])
    write(tmp_path / "cut.medviz", [FRAMES["start"], FRAMES["step"], FRAMES["step"]])
    write(tmp_path / "study.medviz", [FRAMES["start_two"], FRAMES["step_two"], FRAMES["end"],
                                      FRAMES["analysis_gradient"]])
    infos = {info.id: info for info in list_recordings(tmp_path)}
    assert {k: (i.ending, i.finished, i.tokens) for k, i in infos.items()} == {
        "normal": ("ended", True, 9), "stopped": ("stopped", True, frames.decode(FRAMES["end_cancelled"]).tokens),
        "failed": ("failed", True, 1), "cut": ("cut", False, 2), "study": ("ended", True, 9)}
    start_two = frames.decode(FRAMES["start_two"])
    assert isinstance(start_two, frames.StartFrame)
    assert (infos["normal"].model, infos["normal"].preset, infos["normal"].labels) == ("tiny", "model-card", ("",))
    assert infos["study"].labels == tuple(image.label for image in start_two.images) and len(start_two.images) == 2


def test_the_listing_decodes_no_step(tmp_path: Path) -> None:
    broken_step = msgpack.packb({"v": 2, "type": "step", "i": "not a number"})  # decode() refuses it
    path = write(tmp_path / "a.medviz", [FRAMES["start"], broken_step, broken_step, FRAMES["end"]])
    info = recording_info(path)
    assert (info.tokens, info.ending) == (9, "ended")
    assert [kind for _, kind in iter_types(path)] == ["start", "step", "step", "end"]


def test_the_first_image_is_the_start_frames_picture_and_a_file_without_start_has_none(tmp_path: Path) -> None:
    start = frames.decode(FRAMES["start"])
    assert isinstance(start, frames.StartFrame)
    assert first_image(write(tmp_path / "a.medviz", [FRAMES["start"], FRAMES["end"]])) == start.images[0].png
    with pytest.raises(ProtocolError, match=r"^recording 'b' does not begin with a start frame$"):
        first_image(write(tmp_path / "b.medviz", [FRAMES["step"]]))
