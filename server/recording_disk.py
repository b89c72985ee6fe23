"""The recordings disk as this process sees it: whether recordings can be written, and one session's recording.

Owns: `DiskState` (per recordings folder, process-wide: the last write that failed and why, until a
later write succeeds; `/api/health` reports it as `recordings: "unwritable"` with the reason, or
when the folder's disk has less free space than the floor), `free_mb` and `check_room` (the
free-space floor a recorded session must find when it starts: `recordings_min_free_mb`), and
`SessionRecording` (the writer of one session: opened at its first frame, closed when its `end`
frame is written and before that frame goes out, so a failed close still ends the session with an
error frame; its sidecar summary written at the final `close`, after the end went out; every
failure is a RecordingWriteError naming the cause, recorded in the folder's DiskState, and `close`
in a `finally` never raises).
Does not own the file format (medviz_core/recording/file.py, recording/summary.py) nor who runs a
session (worker.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from medviz_core.errors import MedvizError
from medviz_core.recording.file import RecordingWriteError, RecordingWriter, in_recordings_folder, in_words
from medviz_core.recording.summary import summarize
from medviz_core.wire.codec import peek_fields

log = logging.getLogger("medviz.server")

OK, UNWRITABLE = "ok", "unwritable"
MB = 1024 * 1024
OpenRecording = Callable[[Path], RecordingWriter]


class DiskState:
    """Whether recordings in one folder could be written the last time this process tried."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None  # why the last write failed; None once one succeeds

    def failed(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                log.error("recordings cannot be written: %s", reason)
            self.reason = reason

    def succeeded(self) -> None:
        with self._lock:
            if self.reason is not None:
                log.info("recordings can be written again")
            self.reason = None


_STATES: dict[Path, DiskState] = {}
_STATES_LOCK = threading.Lock()


def disk_state(folder: Path) -> DiskState:
    """The one DiskState of a recordings folder in this process."""
    key = folder.absolute()
    with _STATES_LOCK:
        return _STATES.setdefault(key, DiskState())


def free_mb(folder: Path) -> float:
    """Free space (for this user) on the disk that holds `folder`, or would hold it once created, in MiB."""
    place = folder.absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    stats = os.statvfs(place)
    return stats.f_bavail * stats.f_frsize / MB


def below_floor(folder: Path, min_free_mb: int) -> str | None:
    """Why a new recording may not start in `folder` (less free space than `min_free_mb`), or None."""
    if min_free_mb <= 0:
        return None
    try:
        free = free_mb(folder)
    except OSError as error:
        return in_words(error)
    if free >= min_free_mb:
        return None
    return (f"the recordings disk has {free:.0f} MB free, below the {min_free_mb} MB this server keeps free "
            "(recordings_min_free_mb)")


def health(folder: Path, min_free_mb: int) -> tuple[str, str | None]:
    """(`ok` | `unwritable`, why): the last failed write in this process, else the free-space floor."""
    reason = disk_state(folder).reason or below_floor(folder, min_free_mb)
    return (OK, None) if reason is None else (UNWRITABLE, reason)


def check_room(path: Path, min_free_mb: int) -> None:
    """RecordingWriteError if a new recording at `path` would start below the free-space floor."""
    reason = below_floor(path.parent, min_free_mb)
    if reason is not None:
        raise RecordingWriteError(f"{reason}: recording {path.stem} was not started, so neither was the session; "
                                  "start it without recording, or once there is room")


def is_end(frame: bytes) -> bool:
    """Whether an encoded frame is an `end` frame (its type read, nothing else)."""
    try:
        return peek_fields(frame, frozenset({"type"}), lambda found: "type" in found).get("type") == "end"
    except MedvizError:
        return False


class SessionRecording:
    """One session's recording: `write` each frame as it comes (RecordingWriteError if the disk refuses: the
    session must end), `close` (in a finally: never raises)."""

    def __init__(self, path: Path, open_recording: OpenRecording = in_recordings_folder) -> None:
        self.path = path
        self.state = disk_state(path.parent)
        self._open = open_recording
        self._writer: RecordingWriter | None = None
        self._closed = False
        self._whole = False  # closed without an error: its summary is written at `close`

    def write(self, frame: bytes) -> None:
        if self._closed:
            return
        try:
            if self._writer is None:  # at the first frame: a request that fails before it leaves no file
                self._writer = self._open(self.path)
            self._writer.write(frame)
            if self.state.reason is not None:
                self.state.succeeded()
            if is_end(frame):  # closed before the end frame goes out: a close the disk refuses is an error frame
                self._finish()
        except RecordingWriteError as error:
            self._closed = True
            self.state.failed(error.reason)
            raise

    def close(self) -> None:
        """After the run, whatever happened: close the file if still open (a failure is logged, never raised), then
        write the listing's summary of a recording closed whole (after its end frame went out)."""
        if not self._closed and self._writer is not None:
            try:
                self._finish()
            except RecordingWriteError as error:
                self.state.failed(error.reason)
                log.warning("recording %s: %s", self.path.stem, error.message)
                return
        self._closed = True
        if self._whole:
            try:
                summarize(self.path)  # a failure only costs listings a read of the file
            except (OSError, MedvizError) as error:
                log.warning("recording %s: its summary was not written (%s)", self.path.stem,
                            in_words(error) if isinstance(error, OSError) else error.message)

    def _finish(self) -> None:
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            self._whole = True
            self.state.succeeded()
