"""A recording's summary sidecar: the listing row and the appended results, without reading the recording.

Owns: the sidecar `<id>.summary` next to `<id>.medviz` (JSON, 0600, replaced atomically): the
listing row (recording.RecordingInfo), the recording's size and modification time it describes
(a sidecar that does not match the file is ignored, so a recording changed by anything else is
read again), and the analysis results appended to it (job id -> offset and size, and their bytes
together). `summarize` writes it from one pass over the recording (the worker, once its session
ended); `listing_info` reads it (a listing reads a few hundred bytes per recording, not the
recording); `append_result` appends one analysis result under an exclusive lock: a result
already there is not appended again (`recorded` gives its bytes), the results of one recording
stay within a bound of bytes (`ResultsFull`), a damaged recording is never cut
(recording.RecordingDamaged), and the sidecar follows. Does not own the frame format, the
recording's own frames (recording/file.py) nor HTTP (server/recordings.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medviz_core.errors import MedvizError
from medviz_core.recording.file import (
    FILE_MODE,
    RecordingInfo,
    Scan,
    Tail,
    check_appendable,
    open_to_append,
    read_at_offset,
    recording_info,
    scan,
    summary_path,
    write_after,
)
from medviz_core.wire.codes import ErrorCode

VERSION = 1
MAX_SUMMARY_BYTES = 4 * 1024 * 1024  # a sidecar larger than this is not read (the recording is, instead)


class ResultsFull(MedvizError):
    """A recording's appended results reached their bound: the result is answered, not recorded."""

    code: str = ErrorCode.TOO_LARGE


@dataclass(frozen=True)
class Summary:
    """What the sidecar says of a recording of `size` bytes last modified at `mtime_ns`."""

    info: RecordingInfo
    size: int
    mtime_ns: int
    results: dict[str, tuple[int, int]]
    results_bytes: int


def of_scan(found: Scan) -> Summary:
    return Summary(found.info, found.tail.size, found.mtime_ns, found.results, found.results_bytes)


def write_summary(path: Path, summary: Summary) -> None:
    """Write the sidecar of recording `path` (a temporary file renamed over it). OSError if the disk refuses."""
    body = {"v": VERSION, "size": summary.size, "mtime_ns": summary.mtime_ns, "info": dataclasses.asdict(summary.info),
            "results": summary.results, "results_bytes": summary.results_bytes}
    target = summary_path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(body, file, separators=(",", ":"))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def summarize(path: Path) -> Summary:
    """Read the recording once and write its sidecar (OSError if the disk refuses it); a recording that does not
    end with a whole frame (torn or damaged) gets none, so appends and listings read it again."""
    found = scan(path)
    summary = of_scan(found)
    if found.tail.whole == found.tail.size:
        write_summary(path, summary)
    else:
        summary_path(path).unlink(missing_ok=True)
    return summary


def read_summary(path: Path) -> Summary | None:
    """The sidecar of recording `path` if it describes the file as it is now; None if missing, unreadable,
    or stale (the recording's size or modification time differ)."""
    try:
        stat = path.stat()
        with open(summary_path(path), "rb") as file:
            text = file.read(MAX_SUMMARY_BYTES + 1)
        summary = _parsed(json.loads(text), path.stem) if len(text) <= MAX_SUMMARY_BYTES else None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if summary is None or (summary.size, summary.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return None
    return summary


def _parsed(body: Any, name: str) -> Summary | None:
    if not isinstance(body, dict) or body.get("v") != VERSION:
        return None
    info = body["info"]
    row = RecordingInfo(id=name, created=float(info["created"]), question=_text_or_none(info["question"]),
                        tokens=int(info["tokens"]), finished=bool(info["finished"]), size=int(body["size"]),
                        model=str(info["model"]), preset=str(info["preset"]),
                        labels=tuple(str(label) for label in info["labels"]), ending=str(info["ending"]))
    results = {str(job): (int(place[0]), int(place[1])) for job, place in dict(body["results"]).items()}
    return Summary(row, int(body["size"]), int(body["mtime_ns"]), results, int(body["results_bytes"]))


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def listing_info(path: Path) -> RecordingInfo:
    """A listing row: from the sidecar when it matches the recording, else read from the recording."""
    summary = read_summary(path)
    return summary.info if summary is not None else recording_info(path)


def recorded(path: Path, job: str) -> bytes | None:
    """The bytes of analysis result `job` already appended to the recording (its sidecar says where), or None."""
    summary = read_summary(path)
    place = None if summary is None else summary.results.get(job)
    if place is None:
        return None
    with open(path, "rb") as file:
        return read_at_offset(file, *place)


def _as_it_is(path: Path) -> tuple[Summary, Tail]:
    """The recording's summary and how it ends: from a matching sidecar (written only for a recording that
    ended with a whole frame), else from reading it."""
    known = read_summary(path)
    if known is not None:
        return known, Tail(known.size, known.size)
    found = scan(path)
    return of_scan(found), found.tail


@dataclass(frozen=True)
class Appended:
    """What `append_result` did: `appended` False when the result was already there; `torn` bytes of a torn
    last frame cut off first."""

    appended: bool
    torn: int = 0


def append_result(path: Path, job: str, frame: bytes, max_bytes: int, fsync: bool = False) -> Appended:
    """Append analysis result `job` (its done frame) to a recording, unless it is there already.

    NotFoundError if there is no recording, ProtocolError if it holds no whole frame, RecordingDamaged if bytes
    that are not a frame lie before its last frame, ResultsFull if the results would pass `max_bytes`: in each
    case nothing is written. OSError if the disk refuses.
    """
    with open_to_append(path) as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # one appender at a time, in any process: the sidecar follows each
        summary, ending = _as_it_is(path)
        check_appendable(path, ending)
        if job in summary.results:
            return Appended(False)
        if summary.results_bytes + len(frame) > max_bytes:
            raise ResultsFull(f"recording {path.stem!r} holds {summary.results_bytes} bytes of analysis results; "
                              f"{len(frame)} more would pass its bound of {max_bytes} "
                              "(recording_results_max_bytes): the result is answered but not recorded")
        write_after(file, ending, frame, fsync)
        stat = os.fstat(file.fileno())
        results = {**summary.results, job: (ending.whole, len(frame))}
        info = dataclasses.replace(summary.info, size=stat.st_size)
        write_summary(path, Summary(info, stat.st_size, stat.st_mtime_ns, results,
                                    summary.results_bytes + len(frame)))
    return Appended(True, ending.torn)
