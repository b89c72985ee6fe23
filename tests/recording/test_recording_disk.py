"""recording/file.py and server/recording_disk.py: a disk that refuses a recording is named in plain words, a
looser recordings folder is tightened, and a session's recording fails once, never from its final close."""

from __future__ import annotations

import errno
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medviz_core.recording.file import RecordingWriteError, RecordingWriter, in_words, tighten_folder
from server.recording_disk import OK, UNWRITABLE, SessionRecording, check_room, disk_state, health
from tests.disk import FullDisk
from tests.fixtures.frames import make_fixtures

FRAMES = make_fixtures.build()
STOPPED = ": recording a could not be written, so the session was stopped; start it again without recording, or once " \
          "the disk is fixed"


def test_a_full_disk_is_named_and_the_bytes_written_before_it_stay(tmp_path: Path) -> None:
    writer = FullDisk(room=len(FRAMES["start"]))(tmp_path / "a.medviz")
    writer.write(FRAMES["start"])
    with pytest.raises(RecordingWriteError) as caught:
        writer.write(FRAMES["step"])
    assert (caught.value.message, caught.value.reason) == ("the recordings disk is full" + STOPPED,
                                                           "the recordings disk is full")
    assert caught.value.code == "internal"
    assert (tmp_path / "a.medviz").read_bytes() == FRAMES["start"]
    writer.close()  # already let go: nothing more to say


def test_a_close_the_disk_refuses_is_named_too(tmp_path: Path) -> None:
    writer = FullDisk(at_close=True)(tmp_path / "a.medviz")
    writer.write(FRAMES["start"])
    with pytest.raises(RecordingWriteError, match="^the recordings disk is full: recording a could not be written"):
        writer.close()


def test_a_file_size_limit_is_named_in_a_process_that_has_one(tmp_path: Path) -> None:
    script = f"""
import resource, signal, sys
from pathlib import Path
from medviz_core.recording.file import RecordingWriteError, RecordingWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
writer = RecordingWriter(Path({str(tmp_path / "a.medviz")!r}))
try:
    for _ in range(3):
        writer.write(b"x" * 3000)
except RecordingWriteError as error:
    print(error.message)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "the recording reached the largest file size this server may write" + STOPPED


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "the recordings disk is full"),
    (errno.EIO, "the recordings disk failed to write (an input/output error)"),
    (errno.EACCES, "the server may not write to the recordings folder (permission denied)"),
    (errno.EROFS, "the recordings disk is read-only"),
    (errno.ENAMETOOLONG, "the recording could not be written (file name too long)"),
])
def test_each_cause_reads_in_plain_words(code: int, words: str) -> None:
    import os

    assert in_words(OSError(code, os.strerror(code))) == words


def test_a_recordings_folder_made_looser_is_tightened_to_0700_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="medviz.recording"):
        RecordingWriter(folder / "a.medviz", recordings_folder=True).close()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert caplog.messages == [f"the recordings folder {folder} was mode 0755; tightened it to 0700 (recordings "
                               "hold medical images)"]
    assert tighten_folder(folder) is None and tighten_folder(tmp_path / "none") is None


def test_a_session_recording_fails_once_marks_the_disk_and_a_later_write_clears_it(tmp_path: Path) -> None:
    recording = SessionRecording(tmp_path / "a.medviz", FullDisk(room=len(FRAMES["start"])))
    recording.write(FRAMES["start"])
    with pytest.raises(RecordingWriteError):
        recording.write(FRAMES["step"])
    recording.write(FRAMES["step"])  # the session is ending: nothing more is tried
    recording.close()
    assert health(tmp_path, 0) == (UNWRITABLE, "the recordings disk is full")
    fine = SessionRecording(tmp_path / "b.medviz")
    for name in ("start", "step", "end"):
        fine.write(FRAMES[name])
    fine.close()
    assert health(tmp_path, 0) == (OK, None) and disk_state(tmp_path).reason is None


def test_a_close_the_disk_refuses_at_the_end_frame_is_raised_before_the_end_goes_out(tmp_path: Path) -> None:
    recording = SessionRecording(tmp_path / "a.medviz", FullDisk(at_close=True))
    recording.write(FRAMES["start"])
    with pytest.raises(RecordingWriteError, match="^the recordings disk is full: "):
        recording.write(FRAMES["end"])
    recording.close()  # in the worker's finally: never raises


def test_below_the_free_space_floor_a_recording_does_not_start(tmp_path: Path) -> None:
    check_room(tmp_path / "a.medviz", 1)
    with pytest.raises(RecordingWriteError, match=r"^the recordings disk has \d+ MB free, below the 1000000000 MB "
                       r"this server keeps free \(recordings_min_free_mb\): recording a was not started, so neither "
                       r"was the session; start it without recording, or once there is room$"):
        check_room(tmp_path / "a.medviz", 10**9)
    state, why = health(tmp_path / "not yet made", 10**9)
    assert state == UNWRITABLE and why is not None and why.endswith("(recordings_min_free_mb)")
    assert not (tmp_path / "a.medviz").exists()


def test_the_floor_and_the_results_bound_are_settings_set_by_name() -> None:
    from server.settings import Settings, configured

    changed = configured(Settings(), sets=["recordings_min_free_mb=100", "recording_results_max_bytes=1000"])
    assert (changed.recordings_min_free_mb, changed.recording_results_max_bytes) == (100, 1000)
    assert (Settings().recordings_min_free_mb, Settings().recording_results_max_bytes) == (512, 64 * 1024 * 1024)


def test_a_recordings_folder_that_is_a_file_is_named_at_open(tmp_path: Path) -> None:
    (tmp_path / "recordings").write_text("not a folder")
    with pytest.raises(RecordingWriteError, match="^" + re.escape("the recordings folder is not a folder" + STOPPED)):
        RecordingWriter(tmp_path / "recordings" / "a.medviz")


def test_a_file_written_where_the_user_named_it_leaves_a_shared_folder_as_it_was(tmp_path: Path) -> None:
    shared = tmp_path / "shared"  # like /tmp: every user may write, the sticky bit keeps files apart
    shared.mkdir()
    shared.chmod(0o1777)
    RecordingWriter(shared / "a.medviz").close()
    assert (shared.stat().st_mode & 0o7777, (shared / "a.medviz").stat().st_mode & 0o777) == (0o1777, 0o600)
