"""Everything read back from Redis, parsed and checked like a client frame: Redis is a trust boundary.

Owns: `BadEntry` and one small typed parser per kind of entry a process reads: `job_entry`
(an entry of `P:jobs`: a session id of the server's own format, the request's bytes, the
image work an int in range, the `pacs` mark 0 or 1), `inbox_command` (a worker's `cancel` / `analyze` /
`withdraw`), `answer` (a web node's analysis answer), `stream_item` (a session's frame or
its end marker), `session_row` and `count` (a session hash's fields for the listing), and
the names of workers and web nodes (`names`: heartbeats). Each raises BadEntry with a
one-line reason that quotes no field's value (a value may be huge, binary or a secret);
the callers log that line, acknowledge the entry and skip it (never fatal). Does not own
what the entries mean (scale/queue.py, scale/worker.py, scale/sessions.py, scale/remote_analyses.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from medviz_core.analyses.compute import DEIDENTIFIED
from medviz_core.errors import MedvizError
from medviz_core.recording.file import RECORDING_ID
from server.broadcast import Close
from server.scale.keys import END, FRAME, KEPT, REASON, Fields
from server.worker import JobState

SESSION_ID = re.compile(RECORDING_ID.pattern.encode())  # the server's ids (secrets.token_urlsafe): recording ids
NAME = re.compile(rb"[A-Za-z0-9._:-]{1,200}")  # worker and node names (keys.worker_name), answer tokens
SOURCE = re.compile(rb"(session|recording):[A-Za-z0-9_-]{1,64}(" + re.escape(DEIDENTIFIED.encode()) + rb")?")
"""An analysis source key: its owner's view, or with compute.DEIDENTIFIED anyone else's."""
STATES: dict[str, JobState] = {state: state for state in get_args(JobState)}  # a session hash's "state"
MAX_CODE = 64  # an answer's error code (an ErrorCode value)
MAX_MESSAGE = 2000  # an answer's error message, characters
MAX_REASON = 1000  # an end marker's close reason, bytes


class BadEntry(MedvizError):
    """An entry read from Redis that medviz did not write (a missing field, a wrong type, an id of another
    form): logged in one line, acknowledged and skipped."""


@dataclass(frozen=True)
class JobEntry:
    session: str
    request: bytes
    work: int  # bytes of the image budget the run holds while the engine decodes
    from_pacs: bool = False  # the web node retrieved the images from its PACS (StartRequest.from_pacs)


@dataclass(frozen=True)
class Cancel:
    session: str


@dataclass(frozen=True)
class Analyze:
    node: str
    token: str
    source: str
    request: bytes
    owner: bool  # the session's owner asked (its analyses may run between the session's steps)


@dataclass(frozen=True)
class Withdraw:
    token: str


Command = Cancel | Analyze | Withdraw


@dataclass(frozen=True)
class Answer:
    token: str
    final: bool
    frame: bytes | None  # an analysis frame; None: refused before it became a job (code, message)
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class FrameItem:
    data: bytes
    kept: bool  # False: live viewers only (`queued`), never in a late joiner's backlog


@dataclass(frozen=True)
class EndItem:
    close: Close  # how the session's viewers' sockets close


@dataclass(frozen=True)
class SessionRow:
    state: JobState
    created: float
    frames: int
    recording: bool


def _field(fields: Fields, name: bytes) -> bytes:
    value = fields.get(name)
    if not isinstance(value, bytes):
        raise BadEntry(f"no {name.decode()!r} field")
    return value


def _matching(value: bytes, pattern: re.Pattern[bytes], what: str) -> str:
    if not pattern.fullmatch(value):
        raise BadEntry(f"{what} is not of the form medviz makes ({len(value)} bytes)")
    return value.decode("ascii")


def session_id(value: bytes) -> str:
    """A session id as the server makes them: [A-Za-z0-9_-], 1 to 64 characters (never a path)."""
    return _matching(value, SESSION_ID, "the session id")


def name(value: bytes, what: str = "the name") -> str:
    return _matching(value, NAME, what)


def integer(value: object, low: int, high: int, what: str) -> int:
    """A decimal integer in [low, high]."""
    if not isinstance(value, bytes) or len(value) > 20 or not re.fullmatch(rb"-?[0-9]+", value):
        raise BadEntry(f"{what} is not an integer")
    number = int(value)
    if not low <= number <= high:
        raise BadEntry(f"{what} {number} is out of range [{low}, {high}]")
    return number


def flag(value: bytes, what: str) -> bool:
    if value not in (b"0", b"1"):
        raise BadEntry(f"{what} is not 0 or 1")
    return value == b"1"


def job_entry(fields: Fields, max_work: int) -> JobEntry:
    """An entry of `P:jobs` (scale/queue.py's submit writes session, request, work, pacs); a job queued before
    the `pacs` field existed reads as not from the PACS."""
    return JobEntry(session=session_id(_field(fields, b"session")), request=_field(fields, b"request"),
                    work=integer(fields.get(b"work", b"0"), 0, max_work, "the image work"),
                    from_pacs=flag(fields.get(b"pacs", b"0"), "the pacs flag"))


def job_session(fields: Fields) -> str | None:
    """The session id of a job entry, if it is one of the server's form (a malformed job of a real session
    ends that session with an error rather than leave it waiting); else None."""
    try:
        return session_id(_field(fields, b"session"))
    except BadEntry:
        return None


def inbox_command(fields: Fields) -> Command:
    """A worker's inbox command (scale/sessions.py's cancel, scale/remote_analyses.py's analyze and withdraw)."""
    command = fields.get(b"cmd")
    if command == b"cancel":
        return Cancel(session_id(_field(fields, b"session")))
    if command == b"analyze":
        return Analyze(node=name(_field(fields, b"node"), "the node"),
                       token=name(_field(fields, b"token"), "the token"),
                       source=_matching(_field(fields, b"source"), SOURCE, "the source key"),
                       request=_field(fields, b"request"), owner=flag(fields.get(b"owner", b"0"), "the owner flag"))
    if command == b"withdraw":
        return Withdraw(name(_field(fields, b"token"), "the token"))
    raise BadEntry("an unknown command" if isinstance(command, bytes) else "no 'cmd' field")


def answer(fields: Fields) -> Answer:
    """An analysis answer on a web node's answer stream (scale/worker.py's reply and refuse)."""
    token, final = name(_field(fields, b"token"), "the token"), flag(_field(fields, b"final"), "final")
    frame = fields.get(b"frame")
    if frame is not None:
        return Answer(token, final, frame)
    if not final:
        raise BadEntry("an answer with neither a frame nor a final refusal")
    return Answer(token, final, None, code=_text(_field(fields, b"code"), MAX_CODE, "the code"),
                  message=_text(fields.get(b"message", b""), 4 * MAX_MESSAGE, "the message")[:MAX_MESSAGE])


def stream_item(fields: Fields) -> FrameItem | EndItem:
    """A session's frames-stream entry: a frame (keys.frame_entry) or its end marker (end_entry)."""
    end = fields.get(END)
    if end is not None:
        code = integer(end, 1000, 4999, "the close code")
        return EndItem((code, _text(fields.get(REASON, b""), MAX_REASON, "the close reason")))
    return FrameItem(_field(fields, FRAME), flag(fields.get(KEPT, b"0"), "the kept flag"))


def session_row(state: bytes | None, created: bytes | None, frames: bytes | None,
                record: bytes | None) -> SessionRow:
    """A session hash's fields for the listing (state, created, frames count, record flag)."""
    shown = STATES.get(_text(state or b"", 16, "the state"))
    if shown is None:
        raise BadEntry("an unknown state")
    return SessionRow(state=shown, created=number(created or b"0", "created"),
                      frames=integer(frames or b"0", 0, 2**53, "the frames count"),
                      recording=flag(record or b"0", "the record flag"))


def number(value: object, what: str) -> float:
    """A finite decimal number (a time in seconds)."""
    try:
        found = float(value.decode("ascii")) if isinstance(value, bytes) and len(value) <= 32 else math.nan
    except (UnicodeDecodeError, ValueError):
        found = math.nan
    if not math.isfinite(found):
        raise BadEntry(f"{what} is not a number")
    return found


def count(value: bytes, what: str = "a viewer count") -> int:
    return integer(value, 0, 2**31, what)


def names(values: Iterable[object]) -> list[str]:
    """The members of a heartbeat set that are names of the form medviz makes (others are left out)."""
    return [v.decode("ascii") for v in values if isinstance(v, bytes) and NAME.fullmatch(v)]


def session_ids(values: Iterable[object]) -> list[str]:
    """The members of a set of session ids that have the server's form (others are left out)."""
    return [v.decode("ascii") for v in values if isinstance(v, bytes) and SESSION_ID.fullmatch(v)]


def label(value: object, limit: int = 200) -> str | None:
    """A short UTF-8 text (a worker's model or device name), or None if it is not one."""
    try:
        return _text(value, limit, "the label") if isinstance(value, bytes) else None
    except BadEntry:
        return None


def _text(value: bytes, limit: int, what: str) -> str:
    if len(value) > limit:
        raise BadEntry(f"{what} is {len(value)} bytes; at most {limit}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadEntry(f"{what} is not UTF-8") from None
