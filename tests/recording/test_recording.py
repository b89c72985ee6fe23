"""recording/file.py: append-only writing, tolerant reading of cut files, ids and listings."""

from __future__ import annotations

from pathlib import Path

import pytest

from medviz_core.errors import NotFoundError, ProtocolError, RequestError
from medviz_core.recording.file import (
    RecordingDamaged,
    RecordingWriter,
    Tail,
    append_frame,
    check_id,
    delete_recording,
    index_recording,
    iter_frames,
    list_recordings,
    read_at,
    read_recording,
    recording_info,
    recording_path,
    tail,
)
from medviz_core.wire import server_frames as frames
from tests.fixtures.frames import make_fixtures

FRAMES = make_fixtures.build()


def session_frames() -> list[bytes]:
    return [FRAMES["start"], FRAMES["step"], FRAMES["step"], FRAMES["step_special"], FRAMES["end"]]


def write(path: Path, parts: list[bytes]) -> Path:
    with RecordingWriter(path) as writer:
        for part in parts:
            writer.write(part)
    return path


def test_a_finished_recording_reads_back_every_frame_unchanged(tmp_path: Path) -> None:
    parts = session_frames()
    recording = read_recording(write(tmp_path / "a.medviz", parts))
    assert [f.data for f in recording.frames] == parts
    assert [f.offset for f in recording.frames] == [0, 3065, 5449, 7833, 8316]
    assert recording.finished is True
    assert recording.size == 8465
    assert len(recording.steps) == 3
    assert recording.start is not None and recording.start.session == "AbCdEfGhIjKlMnOpQrStUv"


def test_each_frame_is_on_disk_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "live.medviz"
    writer = RecordingWriter(path, fsync=True)
    writer.write(FRAMES["start"])
    assert path.read_bytes() == FRAMES["start"]
    writer.write(FRAMES["step"])
    assert [f.frame.type for f in iter_frames(path)] == ["start", "step"]
    writer.close()


def test_the_writer_never_overwrites_an_existing_recording(tmp_path: Path) -> None:
    path = write(tmp_path / "a.medviz", [FRAMES["start"]])
    with pytest.raises(FileExistsError):
        RecordingWriter(path)


def test_a_file_cut_at_every_byte_of_its_last_frame_reads_whole_frames_only(tmp_path: Path) -> None:
    parts = session_frames()
    whole = b"".join(parts)
    last_start = len(whole) - len(parts[-1])
    cut = tmp_path / "cut.medviz"
    for length in range(last_start, len(whole) + 1):
        cut.write_bytes(whole[:length])
        recording = read_recording(cut)
        complete = length == len(whole)
        assert [f.data for f in recording.frames] == (parts if complete else parts[:-1]), length
        assert recording.finished is complete, length


def test_a_file_cut_inside_its_first_frame_reads_as_empty(tmp_path: Path) -> None:
    cut = tmp_path / "cut.medviz"
    cut.write_bytes(FRAMES["start"][:1000])
    recording = read_recording(cut)
    assert recording.frames == () and recording.finished is False and recording.start is None


def test_garbage_after_whole_frames_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "junk.medviz"
    path.write_bytes(FRAMES["start"] + FRAMES["step"] + b"\xc1\xc1\xc1")
    assert [f.frame.type for f in iter_frames(path)] == ["start", "step"]


def test_a_recording_that_does_not_begin_with_start_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.medviz", [FRAMES["step"]])
    with pytest.raises(ProtocolError, match=r"^recording 'odd' does not begin with a start frame$"):
        read_recording(path)


def test_a_missing_recording_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"^recording 'nope' does not exist$"):
        read_recording(tmp_path / "nope.medviz")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 65, "a.b", "é"])
def test_recording_ids_with_path_tricks_are_refused(bad: str) -> None:
    with pytest.raises(RequestError, match=r"^recording id must match \[A-Za-z0-9_-\]\{1,64\}; got "):
        check_id(bad)


def test_a_valid_id_maps_to_a_file_in_the_folder(tmp_path: Path) -> None:
    assert recording_path(tmp_path, "Ab-9_z") == tmp_path / "Ab-9_z.medviz"


def test_listing_shows_finished_and_cut_recordings(tmp_path: Path) -> None:
    write(tmp_path / "done.medviz", session_frames())
    write(tmp_path / "cut.medviz", session_frames()[:3])
    (tmp_path / "notes.txt").write_text("not a recording")
    infos = {info.id: info for info in list_recordings(tmp_path)}
    assert sorted(infos) == ["cut", "done"]
    done, cut = infos["done"], infos["cut"]
    assert (done.tokens, done.finished, done.size, done.question) == (9, True, 8465, "Is there an effusion?")
    assert (cut.tokens, cut.finished, cut.created) == (2, False, 1764400000.5)


def test_delete_removes_a_recording_and_then_it_is_not_found(tmp_path: Path) -> None:
    write(tmp_path / "gone.medviz", session_frames())
    delete_recording(tmp_path, "gone")
    assert list_recordings(tmp_path) == []
    with pytest.raises(NotFoundError, match=r"^recording 'gone' does not exist$"):
        delete_recording(tmp_path, "gone")


def test_frames_larger_than_the_read_chunk_read_back_whole(tmp_path: Path) -> None:
    big = frames.ErrorFrame("internal", "x" * 200_000).to_wire()
    parts = [FRAMES["start"], big, big, FRAMES["end"]]
    path = write(tmp_path / "big.medviz", parts)
    assert [f.data for f in iter_frames(path)] == parts


def test_analysis_results_appended_after_the_end_keep_the_recording_finished(tmp_path: Path) -> None:
    path = write(tmp_path / "a.medviz", session_frames())
    append_frame(path, FRAMES["analysis_gradient"])
    append_frame(path, FRAMES["analysis_queued"])  # not a result: listed as a frame, not as an analysis
    recording = read_recording(path)
    assert recording.finished is True and recording.end is not None and recording.end.tokens == 9
    assert recording.end_frame is not None and recording.end_frame.data == FRAMES["end"]
    assert [f.data for f in recording.analyses] == [FRAMES["analysis_gradient"]]
    assert len(recording.steps) == 3


def test_a_frame_appended_while_the_writer_is_open_lands_between_its_frames(tmp_path: Path) -> None:
    path = tmp_path / "live.medviz"
    with RecordingWriter(path) as writer:
        writer.write(FRAMES["start"])
        append_frame(path, FRAMES["analysis_heads"])
        writer.write(FRAMES["step"])
    assert [f.data for f in iter_frames(path)] == [FRAMES["start"], FRAMES["analysis_heads"], FRAMES["step"]]


def test_appending_to_a_missing_recording_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"^recording 'gone' does not exist$"):
        append_frame(tmp_path / "gone.medviz", FRAMES["analysis_gradient"])
    assert not (tmp_path / "gone.medviz").exists()


def test_appending_after_a_torn_last_frame_cuts_it_off_first_so_the_result_reads_back(tmp_path: Path) -> None:
    parts = session_frames()
    path = write(tmp_path / "torn.medviz", [*parts[:3], parts[3][:100]])  # a crash mid-frame
    whole = sum(len(p) for p in parts[:3])
    assert append_frame(path, FRAMES["analysis_gradient"]) == 100
    assert append_frame(path, FRAMES["analysis_heads"]) == 0
    recording = read_recording(path)
    assert [f.data for f in recording.frames] == [*parts[:3], FRAMES["analysis_gradient"], FRAMES["analysis_heads"]]
    assert path.stat().st_size == whole + len(FRAMES["analysis_gradient"]) + len(FRAMES["analysis_heads"])


def test_appending_to_a_recording_without_a_whole_frame_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.medviz", [FRAMES["start"][:50]])
    with pytest.raises(ProtocolError, match=r"^recording 'cut' holds no whole frame; nothing is appended to it$"):
        append_frame(path, FRAMES["analysis_gradient"])
    assert path.read_bytes() == FRAMES["start"][:50]


def test_recordings_are_written_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = write(tmp_path / "new" / "a.medviz", session_frames())
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_the_index_says_where_each_frame_lies_and_reads_its_exact_bytes(tmp_path: Path) -> None:
    parts = session_frames()
    path = write(tmp_path / "a.medviz", parts)
    append_frame(path, FRAMES["analysis_gradient"])
    index = index_recording(path)
    assert [(e.offset, e.type) for e in index] == [
        (0, "start"), (3065, "step"), (5449, "step"), (7833, "step"), (8316, "end"), (8465, "analysis")]
    assert [(e.index, e.t_ms > 0) for e in index if e.type == "step"] == [(7, True), (7, True), (8, True)]
    assert index[-1].done is True
    with path.open("rb") as file:
        assert [read_at(file, e) for e in index] == [*parts, FRAMES["analysis_gradient"]]


def test_the_listing_counts_steps_of_a_cut_recording_without_reading_it_whole(tmp_path: Path) -> None:
    parts = session_frames()
    path = write(tmp_path / "cut.medviz", parts[:3])
    info = recording_info(path)
    assert (info.id, info.tokens, info.finished, info.size) == ("cut", 2, False, len(parts[0]) + len(parts[1]) * 2)


@pytest.mark.parametrize("damage", [b"\xc1", b"\xc6\x00\x01\x00\x00"], ids=["not msgpack", "a length past the end"])
def test_a_bad_byte_before_the_last_frame_is_never_cut_by_an_append(tmp_path: Path, damage: bytes) -> None:
    parts = session_frames()
    path = write(tmp_path / "bad.medviz", parts)
    data = bytearray(path.read_bytes())
    data[5449 : 5449 + len(damage)] = damage  # the second step's first bytes
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingDamaged, match=r"^recording 'bad' is damaged at byte 5449 of 8465 \(whole frames "
                       r"lie after bytes that are not one\); nothing is appended to it, so nothing after the damage "
                       r"is cut$"):
        append_frame(path, FRAMES["analysis_gradient"])
    assert path.read_bytes() == bytes(data)
    assert tail(path) == Tail(whole=5449, size=8465, damaged=True)
    assert [f.frame.type for f in iter_frames(path)] == ["start", "step"]  # a replay stops there, and says so


def test_a_torn_last_frame_is_not_damage(tmp_path: Path) -> None:
    parts = session_frames()
    path = write(tmp_path / "torn.medviz", [*parts[:4], parts[4][:60]])
    assert tail(path) == Tail(whole=8316, size=8376, damaged=False) and tail(path).torn == 60
