"""recording/summary.py: the listing reads a small sidecar, not the recording; appended results are kept once
each, within a bound, and never cut a damaged recording."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medviz_core.recording.file import (
    RecordingDamaged,
    delete_recording,
    list_recordings,
    read_recording,
    recording_info,
    summary_path,
)
from medviz_core.recording.summary import ResultsFull, append_result, listing_info, read_summary, recorded, summarize
from medviz_core.wire import server_frames as frames
from tests.fixtures.frames import make_fixtures
from tests.recording.test_recording import session_frames, write

FRAMES = make_fixtures.build()
GRADIENT_JOB = str(frames.decode(FRAMES["analysis_gradient"]).job)  # type: ignore[union-attr]


def bytes_read() -> int:
    """Bytes this process has read through read(2) and its kin so far (Linux: /proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def large_recording(path: Path, steps: int) -> Path:
    parts = session_frames()
    return write(path, [parts[0], *[FRAMES["step"]] * steps, parts[-1]])


def test_the_listing_of_ten_large_recordings_reads_their_sidecars_not_them(tmp_path: Path) -> None:
    for n in range(10):
        summarize(large_recording(tmp_path / f"r{n}.medviz", 1000))  # 2.4 MB each
    assert sum(p.stat().st_size for p in tmp_path.glob("*.medviz")) > 20_000_000
    before = bytes_read()
    rows = list_recordings(tmp_path, listing_info)
    spent = bytes_read() - before
    assert spent < 1_000_000, spent
    assert rows == list_recordings(tmp_path)  # the same rows as reading each recording whole
    assert [(r.tokens, r.finished, r.ending) for r in rows] == [(9, True, "ended")] * 10


def test_a_sidecar_that_no_longer_matches_its_recording_is_ignored(tmp_path: Path) -> None:
    path = large_recording(tmp_path / "a.medviz", 2)
    summarize(path)
    assert read_summary(path) is not None
    with path.open("ab") as file:
        file.write(FRAMES["analysis_heads"])  # changed by something else
    assert read_summary(path) is None
    assert listing_info(path) == recording_info(path)
    summary_path(path).write_text("{not json")
    assert read_summary(path) is None


def test_a_torn_recording_gets_no_sidecar(tmp_path: Path) -> None:
    parts = session_frames()
    path = write(tmp_path / "a.medviz", [*parts[:3], parts[3][:50]])
    summarize(path)
    assert not summary_path(path).exists()


def test_a_result_is_appended_once_and_a_repeat_is_read_from_the_recording(tmp_path: Path) -> None:
    path = write(tmp_path / "a.medviz", session_frames())
    size = path.stat().st_size
    first = append_result(path, GRADIENT_JOB, FRAMES["analysis_gradient"], 1 << 20)
    again = append_result(path, GRADIENT_JOB, FRAMES["analysis_gradient"], 1 << 20)
    assert (first.appended, again.appended) == (True, False)
    assert path.stat().st_size == size + len(FRAMES["analysis_gradient"])
    assert recorded(path, GRADIENT_JOB) == FRAMES["analysis_gradient"]
    assert recorded(path, "gradient-99-00000000") is None
    assert [f.data for f in read_recording(path).analyses] == [FRAMES["analysis_gradient"]]


def test_results_past_the_bound_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = write(tmp_path / "a.medviz", session_frames())
    result = FRAMES["analysis_gradient"]
    bound = 2 * len(result) + 10
    for n in range(2):
        append_result(path, f"job-{n}", result, bound)
    whole = path.read_bytes()
    with pytest.raises(ResultsFull, match=rf"^recording 'a' holds {2 * len(result)} bytes of analysis results; "
                       rf"{len(result)} more would pass its bound of {bound} \(recording_results_max_bytes\): the "
                       "result is answered but not recorded$"):
        append_result(path, "job-2", result, bound)
    assert path.read_bytes() == whole


def test_a_bad_byte_in_the_middle_then_an_append_loses_nothing_after_it(tmp_path: Path) -> None:
    path = write(tmp_path / "a.medviz", session_frames())
    append_result(path, GRADIENT_JOB, FRAMES["analysis_gradient"], 1 << 20)  # a sidecar now matches the file
    data = bytearray(path.read_bytes())
    data[5449] = 0xC1  # the second step's first byte: not msgpack
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # even with its time put back, the size/time pair no longer matches the sidecar
    with pytest.raises(RecordingDamaged, match=r"^recording 'a' is damaged at byte 5449 of "):
        append_result(path, "heads-1-00000000", FRAMES["analysis_heads"], 1 << 20)
    assert path.read_bytes() == bytes(data)


def test_deleting_a_recording_deletes_its_sidecar(tmp_path: Path) -> None:
    summarize(write(tmp_path / "a.medviz", session_frames()))
    delete_recording(tmp_path, "a")
    assert list(tmp_path.iterdir()) == []
