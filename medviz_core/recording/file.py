"""Recordings: the frames of one session, exactly as sent, appended to a file.

Owns: the append-only writer (one flush per frame, fsync on request; files are created 0600 in
a 0700 folder, and a folder found looser is tightened to 0700: they hold medical images; a write
the disk refuses is a `RecordingWriteError` naming the cause in plain words), `append_frame` (an
analysis result added to a recording later, even while its session still runs: every handle
appends, O_APPEND; a torn last frame, as a crash or a full disk leaves it, is cut off first so the
new frame is readable, but a recording damaged before its last frame is never cut:
`RecordingDamaged`, nothing appended), `scan` (one pass: the listing row, where the whole frames
end, whether the file is damaged before its end and the results appended to it), the
tolerant reader (whole frames only: a file cut at any byte reads back up to its last whole
frame and says whether it holds `end`), the index of a recording (where each frame lies, so a
replay reads frames from disk as it sends them), recording ids and the listing metadata
(`recording_info`: only the start and end frames are decoded; the frames between are skipped
by msgpack and only their type is read, and how the session ended: `ENDINGS`). A
recording made before protocol v2 reads back as v2 frames (`RecordedFrame.sent` gives the bytes
a viewer gets: v1 frames re-encoded as v2, v2 ones unchanged). Does not own the frame format
(wire/) nor HTTP (server/recordings.py). Callers write one recording from one thread (the
server's worker).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import msgpack

from medviz_core.errors import MedvizError, NotFoundError, ProtocolError, RequestError
from medviz_core.wire.codec import peek_fields
from medviz_core.wire.codes import ErrorCode
from medviz_core.wire.limits import SERVER_LIMITS, unpack_kwargs
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import EndFrame, Frame, SourceFrame, StartFrame, StepFrame, decode

log = logging.getLogger("medviz.recording")

SUFFIX = ".medviz"
SUMMARY_SUFFIX = ".summary"  # the listing's sidecar of a recording (recording/summary.py), next to it
FILE_MODE = 0o600
FOLDER_MODE = 0o700
RECORDING_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHUNK = 1 << 16


def check_id(recording_id: str) -> str:
    """A recording id, or RequestError: ids never carry path separators or dots."""
    if not RECORDING_ID.fullmatch(recording_id):
        shown = recording_id if len(recording_id) <= 80 else recording_id[:80] + "..."
        raise RequestError(f"recording id must match [A-Za-z0-9_-]{{1,64}}; got {shown!r}")
    return recording_id


def recording_path(directory: Path, recording_id: str) -> Path:
    return directory / f"{check_id(recording_id)}{SUFFIX}"


class RecordingWriteError(MedvizError):
    """The disk refused a recording's write (full, failing, read-only, not ours): the message says which,
    `reason` the cause alone ("the recordings disk is full")."""

    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class RecordingDamaged(ProtocolError):
    """A recording with bytes that are not a frame before its last frame: nothing is appended to it."""


WORDS = {
    errno.ENOSPC: "the recordings disk is full",
    errno.EDQUOT: "the recordings disk quota is used up",
    errno.EIO: "the recordings disk failed to write (an input/output error)",
    errno.EROFS: "the recordings disk is read-only",
    errno.EACCES: "the server may not write to the recordings folder (permission denied)",
    errno.EPERM: "the server may not write to the recordings folder (operation not permitted)",
    errno.EFBIG: "the recording reached the largest file size this server may write",
    errno.ENOTDIR: "the recordings folder is not a folder",
}


def in_words(error: OSError) -> str:
    """What went wrong with a recording's file, for people: "the recordings disk is full" for ENOSPC."""
    if error.errno in WORDS:
        return WORDS[error.errno]
    return f"the recording could not be written ({(error.strerror or type(error).__name__).lower()})"


def write_error(error: OSError, path: Path) -> RecordingWriteError:
    reason = in_words(error)
    return RecordingWriteError(f"{reason}: recording {path.stem} could not be written, so the session was stopped; "
                               "start it again without recording, or once the disk is fixed", reason)


def tighten_folder(folder: Path) -> int | None:
    """Make an existing recordings folder 0700 (it holds medical images); returns its former mode if it was
    looser (and logs it; an error line if it could not be changed), None if it already was private or does
    not exist."""
    try:
        mode = folder.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if mode & 0o077 == 0:
        return None
    try:
        folder.chmod(FOLDER_MODE)
    except OSError as error:  # not this user's folder: say so loudly, and go on
        log.error("the recordings folder %s is mode %04o and could not be tightened to %04o (%s): other local users "
                  "may read the recordings in it", folder, mode, FOLDER_MODE, (error.strerror or "").lower())
        return mode
    log.warning("the recordings folder %s was mode %04o; tightened it to %04o (recordings hold medical images)",
                folder, mode, FOLDER_MODE)
    return mode


class RecordingWriter:
    """Appends encoded frames to a new file (0600), flushing after each so a crash loses at most one.
    RecordingWriteError when the disk refuses the file, a write or the close. A folder it makes is 0700; an
    existing one is tightened to 0700 only when it is a recordings folder (`recordings_folder`: a server's, where
    every file is a recording), never a folder the user named with `--out` (it may be /tmp, shared by everyone)."""

    def __init__(self, path: Path, fsync: bool = False, recordings_folder: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        try:
            try:
                path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            except FileExistsError:  # a file where the folder should be
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
            if recordings_folder:
                tighten_folder(path.parent)
            # O_EXCL: never overwrite another recording; O_APPEND: append_frame may add frames too.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
        except FileExistsError:
            raise
        except OSError as error:
            raise write_error(error, path) from error
        self._file: BinaryIO | None = os.fdopen(fd, "ab")

    def write(self, frame: bytes) -> None:
        if self._file is None:
            raise ValueError(f"recording {self.path.name} is closed")
        try:
            self._file.write(frame)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as error:
            self._abandon()
            raise write_error(error, self.path) from error

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as error:
                raise write_error(error, self.path) from error

    def _abandon(self) -> None:
        """After a failed write: let the file go without flushing what the disk refused (never raises)."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()  # the flush fails again, and the descriptor is closed all the same

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def in_recordings_folder(path: Path) -> RecordingWriter:
    """A session's recording in a server's recordings folder (kept 0700: it holds only recordings)."""
    return RecordingWriter(path, recordings_folder=True)


def append_frame(path: Path, frame: bytes, fsync: bool = False) -> int:
    """Append one frame to an existing recording; returns the bytes of a torn last frame cut off first.

    NotFoundError if there is no recording, ProtocolError if it holds no whole frame, RecordingDamaged
    (nothing appended, nothing cut) if bytes that are not a frame lie before its last frame.
    """
    with open_to_append(path) as file:
        found = tail(path)
        check_appendable(path, found)
        write_after(file, found, frame, fsync)
    return found.torn


@contextlib.contextmanager
def open_to_append(path: Path) -> Iterator[BinaryIO]:
    """An existing recording opened to append (O_APPEND: every write lands at the end). NotFoundError if missing."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        raise NotFoundError(f"recording {path.stem!r} does not exist") from None
    with os.fdopen(fd, "r+b") as file:
        yield file


def check_appendable(path: Path, found: Tail) -> None:
    """ProtocolError if the recording holds no whole frame, RecordingDamaged if bytes that are not a frame lie
    before its last frame: in both cases nothing may be appended (nor cut)."""
    if found.whole == 0:
        raise ProtocolError(f"recording {path.stem!r} holds no whole frame; nothing is appended to it")
    if found.damaged:
        raise damaged(path, found)


def write_after(file: BinaryIO, found: Tail, frame: bytes, fsync: bool) -> None:
    """Cut a torn last frame off (`found` says where the whole frames end), then append `frame`."""
    if found.torn > 0:
        os.ftruncate(file.fileno(), found.whole)
    file.write(frame)  # O_APPEND: at the (new) end
    file.flush()
    if fsync:
        os.fsync(file.fileno())


@dataclass(frozen=True)
class Tail:
    """How a recording ends: its whole frames end at `whole` of `size` bytes; `damaged`: what follows is not
    just a torn last frame (a bad byte before the last frame: whole frames lie after it)."""

    whole: int
    size: int
    damaged: bool = False

    @property
    def torn(self) -> int:
        """Bytes of a torn last frame after the whole ones (0 when none, or when damaged: never to be cut)."""
        return 0 if self.damaged else self.size - self.whole


def damaged(path: Path, found: Tail) -> RecordingDamaged:
    """The refusal to append to a damaged recording (also logged: someone should look at the file)."""
    log.warning("recording %s is damaged at byte %d of %d; nothing is appended to it", path.stem, found.whole,
                found.size)
    return RecordingDamaged(f"recording {path.stem!r} is damaged at byte {found.whole} of {found.size} (whole "
                            "frames lie after bytes that are not one); nothing is appended to it, so nothing after "
                            "the damage is cut")


def tail(path: Path) -> Tail:
    """Where the last whole msgpack value ends (where an append must start) and whether only a torn frame
    follows. Values are skipped, not decoded (one pass in C), so appending to a long recording stays cheap."""
    stop = _Stop()
    for _ in _skipped_values(path, stop):
        pass
    return _tail(path, stop)


def _tail(path: Path, stop: _Stop) -> Tail:
    size = path.stat().st_size
    if stop.end >= size:
        return Tail(stop.end, size)
    return Tail(stop.end, size, damaged=stop.broken or _frame_after(path, stop.end))


@dataclass
class _Stop:
    """Where reading whole values stopped: the end of the last one, and whether bytes that are not msgpack
    (not merely a value cut short) stopped it."""

    end: int = 0
    broken: bool = False


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=SERVER_LIMITS.max_bin_len + _CHUNK,
                            **unpack_kwargs(SERVER_LIMITS))


def _skipped_values(path: Path, stop: _Stop) -> Iterator[int]:
    """Each whole msgpack value's end, skipped over (not built); stops at a cut or corrupt tail (`stop` says)."""
    unpacker = _unpacker()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            unpacker.feed(chunk)
            while True:
                try:
                    unpacker.skip()
                except msgpack.OutOfData:
                    break
                except (ValueError, msgpack.FormatError, msgpack.StackError):
                    stop.broken = True
                    return
                stop.end = unpacker.tell()
                yield stop.end


FRAME_KEY = b"\xa1v"  # every frame is a map whose first key is "v" (the protocol version)
MAP_HEADERS = ((1, range(0x80, 0x90)), (3, range(0xDE, 0xDF)), (5, range(0xDF, 0xE0)))  # fixmap, map16, map32


def _frame_after(path: Path, start: int) -> bool:
    """Whether a whole frame (a msgpack map holding a string `type`) begins anywhere after `start`: then the
    bytes at `start` are damage in the middle, not a torn last frame."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        at = view.find(FRAME_KEY, start + 1)
        while at != -1:
            for back, firsts in MAP_HEADERS:
                begin = at - back
                if begin > start and view[begin] in firsts and _is_frame(view, begin):
                    return True
            at = view.find(FRAME_KEY, at + 1)
    return False


def _is_frame(view: mmap.mmap, begin: int) -> bool:
    unpacker = _unpacker()
    at = begin
    while at < len(view):
        unpacker.feed(view[at : at + _CHUNK])
        at += _CHUNK
        try:
            unpacker.skip()
        except msgpack.OutOfData:
            continue
        except (ValueError, msgpack.FormatError, msgpack.StackError):
            return False
        try:
            found = peek_fields(bytes(view[begin : begin + unpacker.tell()]), frozenset({"type"}),
                                lambda fields: "type" in fields)
        except ProtocolError:
            return False
        return isinstance(found.get("type"), str)
    return False


@dataclass(frozen=True)
class RecordedFrame:
    """One whole frame of a recording: its exact bytes and meaning (v1 frames read as v2)."""

    offset: int
    data: bytes
    frame: Frame

    @property
    def sent(self) -> bytes:
        """The bytes a viewer gets: the recorded ones, or for a version-1 frame its v2 encoding."""
        return upgraded(self.data, self.frame)


def is_v1(data: bytes) -> bool:
    """Whether a whole frame was written in protocol version 1 (its `v` field, near the start)."""
    return data[:8].find(b"\xa1v\x01") != -1


def upgraded(data: bytes, frame: Frame | None = None) -> bytes:
    """A recorded frame's bytes in protocol v2: unchanged, or a v1 frame decoded and encoded again."""
    if not is_v1(data):
        return data
    return (frame if frame is not None else decode(data)).to_wire()


def _whole_values(path: Path, stop: _Stop | None = None) -> Iterator[tuple[int, bytes]]:
    """Each whole msgpack value's offset and bytes, skipped over (not built) to find where it ends; stops
    quietly at a cut or corrupt tail (`stop` says where and why)."""
    stop = stop if stop is not None else _Stop()
    unpacker = _unpacker()
    buffer = bytearray()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            buffer += chunk
            unpacker.feed(chunk)
            while True:
                try:
                    unpacker.skip()
                except msgpack.OutOfData:  # a frame continues in the next chunk, or the file was cut
                    break
                except (ValueError, msgpack.FormatError, msgpack.StackError):
                    stop.broken = True
                    return
                end = unpacker.tell()
                yield stop.end, bytes(buffer[: end - stop.end])
                del buffer[: end - stop.end]
                stop.end = end


def iter_frames(path: Path) -> Iterator[RecordedFrame]:
    """Whole frames from the start of the file; stops quietly at a cut or corrupt tail."""
    for offset, data in _whole_values(path):
        try:
            frame = decode(data)
        except ProtocolError:
            return
        yield RecordedFrame(offset=offset, data=data, frame=frame)


@dataclass(frozen=True)
class Recording:
    """A recording read back: its whole frames and whether it holds `end`.

    Frames come as written: `start`, the `step`s, `end`, with `analysis` results anywhere
    after `start` (they are appended when a job finishes, during or after the session).
    """

    frames: tuple[RecordedFrame, ...]
    size: int

    @property
    def start(self) -> StartFrame | None:
        first = self.frames[0].frame if self.frames else None
        return first if isinstance(first, StartFrame) else None

    @property
    def steps(self) -> tuple[RecordedFrame, ...]:
        return tuple(f for f in self.frames if isinstance(f.frame, StepFrame))

    @property
    def end_frame(self) -> RecordedFrame | None:
        ends = [f for f in self.frames if isinstance(f.frame, EndFrame)]
        return ends[-1] if ends else None

    @property
    def end(self) -> EndFrame | None:
        recorded = self.end_frame
        return recorded.frame if recorded is not None and isinstance(recorded.frame, EndFrame) else None

    @property
    def analyses(self) -> tuple[RecordedFrame, ...]:
        """The finished (status done) analysis results, in the order they were written."""
        return tuple(f for f in self.frames if isinstance(f.frame, AnalysisFrame) and f.frame.status == "done")

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def source(self) -> SourceFrame | None:
        """The recording-only source frame (the DICOM headers), if the session wrote one."""
        found = [f.frame for f in self.frames if isinstance(f.frame, SourceFrame)]
        return found[0] if found else None


def read_recording(path: Path) -> Recording:
    """Every whole frame of a recording; NotFoundError if missing, ProtocolError if no start."""
    if not path.is_file():
        raise NotFoundError(f"recording {path.stem!r} does not exist")
    frames = tuple(iter_frames(path))
    recording = Recording(frames=frames, size=path.stat().st_size)
    if frames and recording.start is None:
        raise ProtocolError(f"recording {path.stem!r} does not begin with a start frame")
    return recording


ENDINGS = {"eos": "ended", "end_of_turn": "ended", "max_tokens": "ended", "cancelled": "stopped", "error": "failed"}
CUT = "cut"  # no end frame: the server stopped (or the file was cut) before the session ended


@dataclass(frozen=True)
class RecordingInfo:
    """What a recordings list shows. `question` is None for a full report; `labels` has one entry per
    image ("" for an image without one); `ending` is ENDINGS of the end frame's reason, or CUT."""

    id: str
    created: float
    question: str | None
    tokens: int
    finished: bool
    size: int
    model: str = ""
    preset: str = "medviz"
    labels: tuple[str, ...] = ()
    ending: str = CUT


def iter_types(path: Path) -> Iterator[tuple[bytes, str]]:
    """Each whole frame's bytes and type, read without decoding the frame (msgpack skips it; the type is
    among its first fields); stops quietly at a cut or corrupt tail, as iter_frames does."""
    for _, data in _whole_values(path):
        try:
            kind = peek_fields(data, frozenset({"type"}), lambda found: "type" in found).get("type")
        except ProtocolError:
            return
        if not isinstance(kind, str):
            return
        yield data, kind


@dataclass(frozen=True)
class Scan:
    """A recording read once, frame by frame without decoding the steps: its listing row, how it ends and the
    analysis results appended to it (job id -> (offset, size)) with their bytes."""

    info: RecordingInfo
    tail: Tail
    mtime_ns: int
    results: dict[str, tuple[int, int]]
    results_bytes: int


def scan(path: Path) -> Scan:
    """The start and the last end frame decoded, the steps counted by type and the results found by job (never
    the whole file in memory, nor a step decoded). NotFoundError if missing, ProtocolError if no start."""
    if not path.is_file():
        raise NotFoundError(f"recording {path.stem!r} does not exist")
    start: StartFrame | None = None
    end: EndFrame | None = None
    steps = results_bytes = 0
    results: dict[str, tuple[int, int]] = {}
    stop = _Stop()
    for offset, data in _whole_values(path, stop):
        try:
            fields = peek_fields(data, frozenset({"type", "job"}), lambda found: len(found) == 2)
        except ProtocolError:
            break
        kind = fields.get("type")
        if not isinstance(kind, str):
            break
        if offset == 0:
            first = decode(data)
            if not isinstance(first, StartFrame):
                raise ProtocolError(f"recording {path.stem!r} does not begin with a start frame")
            start = first
        elif kind == "end":
            last = decode(data)
            end = last if isinstance(last, EndFrame) else end
        elif kind == "analysis":
            results_bytes += len(data)
            if isinstance(fields.get("job"), str):
                results.setdefault(fields["job"], (offset, len(data)))
        steps += kind == "step"
    stat = path.stat()
    info = RecordingInfo(
        id=path.stem,
        created=start.created if start else stat.st_mtime,
        question=start.question if start else None,
        tokens=end.tokens if end else steps,
        finished=end is not None,
        size=stat.st_size,
        model=start.model.name if start else "",
        preset=start.preset if start else "medviz",
        labels=tuple(image.label for image in start.images) if start else (),
        ending=ENDINGS.get(end.reason, "ended") if end else CUT,
    )
    return Scan(info, _tail(path, stop), stat.st_mtime_ns, results, results_bytes)


def recording_info(path: Path) -> RecordingInfo:
    """What a listing shows, read from the recording itself (scan; recording/summary.py reads a sidecar first)."""
    return scan(path).info


def first_image(path: Path) -> bytes:
    """The session's first image as the model saw it (PNG, from the start frame): for a thumbnail.
    NotFoundError if missing, ProtocolError if the recording has no start frame."""
    if not path.is_file():
        raise NotFoundError(f"recording {path.stem!r} does not exist")
    for data, _ in iter_types(path):
        start = decode(data)
        if isinstance(start, StartFrame):
            return start.images[0].png
        break
    raise ProtocolError(f"recording {path.stem!r} does not begin with a start frame")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where one whole frame of a recording lies and what a replay needs to know of it."""

    offset: int
    size: int
    type: str
    index: int = -1  # a step's index, or the token an analysis result is about
    t_ms: float = 0.0  # a step's recorded time
    done: bool = False  # an analysis result with status done
    v1: bool = False  # written in protocol version 1: send `upgraded` bytes


def index_recording(path: Path) -> tuple[IndexEntry, ...]:
    """Every whole frame's place, read frame by frame; NotFoundError if missing, ProtocolError if no start."""
    if not path.is_file():
        raise NotFoundError(f"recording {path.stem!r} does not exist")
    entries: list[IndexEntry] = []
    for recorded in iter_frames(path):
        frame = recorded.frame
        if not entries and not isinstance(frame, StartFrame):
            raise ProtocolError(f"recording {path.stem!r} does not begin with a start frame")
        v1 = is_v1(recorded.data)
        entry = IndexEntry(recorded.offset, len(recorded.data), frame.type, v1=v1)
        if isinstance(frame, StepFrame):
            entry = IndexEntry(recorded.offset, len(recorded.data), frame.type, frame.index, frame.t_ms, v1=v1)
        elif isinstance(frame, AnalysisFrame):
            entry = IndexEntry(recorded.offset, len(recorded.data), frame.type, frame.index,
                               done=frame.status == "done", v1=v1)
        entries.append(entry)
    return tuple(entries)


def read_at(file: BinaryIO, entry: IndexEntry) -> bytes:
    """The bytes a viewer gets of an indexed frame of an open recording (v1 frames as v2)."""
    data = read_at_offset(file, entry.offset, entry.size)
    return upgraded(data) if entry.v1 else data


def read_at_offset(file: BinaryIO, offset: int, size: int) -> bytes:
    """`size` bytes at `offset` of an open recording; ProtocolError if it is shorter."""
    file.seek(offset)
    data = file.read(size)
    if len(data) != size:
        raise ProtocolError(f"the recording is shorter than its index: {len(data)} of {size} bytes at offset {offset}")
    return data


def list_recordings(directory: Path, read: Callable[[Path], RecordingInfo] = recording_info) -> list[RecordingInfo]:
    """Recordings in a folder, newest first; unreadable files are skipped. `read`: recording_info, or a
    cache of it."""
    if not directory.is_dir():
        return []
    infos = []
    for path in directory.glob(f"*{SUFFIX}"):
        if not RECORDING_ID.fullmatch(path.stem):
            continue
        try:
            infos.append(read(path))
        except (ProtocolError, NotFoundError, OSError):
            continue
    return sorted(infos, key=lambda info: (-info.created, info.id))


def delete_recording(directory: Path, recording_id: str) -> None:
    path = recording_path(directory, recording_id)
    try:
        path.unlink()
    except FileNotFoundError:
        raise NotFoundError(f"recording {recording_id!r} does not exist") from None
    summary_path(path).unlink(missing_ok=True)


def summary_path(path: Path) -> Path:
    """Where the listing's sidecar of a recording lies (written by recording/summary.py)."""
    return path.with_name(path.stem + SUMMARY_SUFFIX)
