"""A recordings disk that fills up, for tests: writes go to /dev/full (the kernel's own ENOSPC) once used up.

Nothing is mounted: `FullDisk(room)` opens recordings as RecordingWriter does, and once `room` bytes
are written (or, with `at_close`, only when the file is closed) the bytes go to /dev/full instead.
"""

from __future__ import annotations

from pathlib import Path

from medviz_core.recording.file import RecordingWriter

DEV_FULL = "/dev/full"


class _FillingWriter(RecordingWriter):
    def __init__(self, path: Path, room: int, at_close: bool) -> None:
        super().__init__(path)
        self.room, self.at_close = room, at_close

    def write(self, frame: bytes) -> None:
        if not self.at_close and len(frame) > self.room:
            self._to_full_disk()
        self.room -= len(frame)
        super().write(frame)

    def close(self) -> None:
        if self.at_close and self._file is not None:
            self._to_full_disk()
            self._file.write(b"\x00")  # buffered: the close's flush meets the full disk
        super().close()

    def _to_full_disk(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(DEV_FULL, "ab")  # noqa: SIM115 - the writer owns and closes it


class FullDisk:
    """Opens recordings (as a GenerationWorker's `open_recording`) on a disk with `room` bytes left."""

    def __init__(self, room: int = 0, at_close: bool = False) -> None:
        self.room, self.at_close = room, at_close
        self.opened: list[Path] = []

    def __call__(self, path: Path) -> RecordingWriter:
        self.opened.append(path)
        return _FillingWriter(path, self.room, self.at_close)
