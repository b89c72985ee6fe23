"""HTTP routes for recordings: list, thumbnail, download, delete. Ids are validated before any path is built.

Owns: the JSON shapes of `/api/recordings` (a row's question only to a request that may replay it:
one whose Origin, if any, may open the replay's websocket; else `question_hidden`), the mapping of
MedvizError to HTTP status (400 bad id, 403 a foreign Origin on a download or thumbnail: guard/security.py's
`same_origin_only`, 404 missing, 409 deleting a recording a live session is still
writing, or downloading one that holds its patient's identity from a server that de-identifies), and
`Summaries`: each recording's listing row and thumbnail (its first image, at most THUMB px
a side, PNG) kept in memory by path, modification time and size, so a listing reads only
the recordings that are new or changed, and of those only their summary sidecar where it matches
(medviz_core/recording/summary.py: a few hundred bytes, not the recording). Does not own the file format
(medviz_core/recording/file.py) or replays (sockets/replay.py).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from medviz_core.errors import ConflictError, MedvizError, NotFoundError
from medviz_core.recording.deidentify import holds_identity
from medviz_core.recording.file import RecordingInfo, first_image, list_recordings, recording_path
from medviz_core.recording.file import delete_recording as delete_file
from medviz_core.recording.summary import listing_info
from server.guard.security import origin_allowed, same_origin_only
from server.sessions import SessionManager
from server.settings import Settings

T = TypeVar("T")
THUMB = 160  # px, the longer side of a thumbnail
KEPT = 1024  # recordings whose row and thumbnail are kept


class Summaries:
    """Listing rows and thumbnails by (path, mtime, size): a recording that grows (an analysis appended)
    or is replaced is read again; the oldest entries go past KEPT. Thread-safe (listings run on threads)."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._rows: OrderedDict[tuple[Path, int, int], RecordingInfo] = OrderedDict()
        self._thumbs: OrderedDict[tuple[Path, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # recordings read (not served from memory), for tests

    def info(self, path: Path) -> RecordingInfo:
        return self._get(self._rows, path, listing_info)

    def thumbnail(self, path: Path) -> bytes:
        return self._get(self._thumbs, path, lambda p: thumbnail_png(first_image(p)))

    def _get(self, table: OrderedDict[tuple[Path, int, int], T], path: Path, read: Callable[[Path], T]) -> T:
        stat = path.stat()
        key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in table:
                table.move_to_end(key)
                return table[key]
        value = read(path)
        with self._lock:
            self.reads += 1
            table[key] = value
            while len(table) > self.kept:
                table.popitem(last=False)
        return value


def thumbnail_png(png: bytes, side: int = THUMB) -> bytes:
    """A picture at most `side` px a side, as PNG (grey pictures stay one channel)."""
    with Image.open(io.BytesIO(png)) as picture:
        small = picture.convert("L" if picture.mode in ("L", "I", "I;16") else "RGB")
        small.thumbnail((side, side))
        out = io.BytesIO()
        small.save(out, format="PNG", optimize=True)
    return out.getvalue()


SUMMARIES = Summaries()

STATUS = {"bad_request": 400, "not_found": 404, "unauthorized": 401, "busy": 503, "too_large": 413, "conflict": 409}


def error_response(error: MedvizError) -> JSONResponse:
    return JSONResponse({"error": {"code": error.code, "message": error.message}},
                        status_code=STATUS.get(error.code, 500))


async def list_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    infos = await asyncio.to_thread(list_recordings, settings.recordings, SUMMARIES.info)
    shown = origin_allowed(settings, request.headers.get("origin"), request.headers.get("host"))
    return JSONResponse({"recordings": [row(info, shown) for info in infos]})


def row(info: RecordingInfo, question_shown: bool) -> dict[str, Any]:
    """A listing row; the question (the user's free text) only where `question_shown`."""
    found = asdict(info)
    hidden = not question_shown and info.question is not None
    found.update(question=None if hidden else info.question, question_hidden=hidden)
    return found


def _existing(request: Request) -> Path:
    """The file of the recording the request names; RequestError for a bad id, NotFoundError if missing."""
    settings: Settings = request.app.state.settings
    path = recording_path(settings.recordings, request.path_params["recording_id"])
    if not path.is_file():
        raise NotFoundError(f"recording {path.stem!r} does not exist")
    return path


@same_origin_only
async def thumbnail_route(request: Request) -> Response:
    try:
        path = _existing(request)
        png = await asyncio.to_thread(SUMMARIES.thumbnail, path)
    except MedvizError as error:
        return error_response(error)
    except OSError:  # deleted meanwhile, or a picture PIL cannot read
        return error_response(NotFoundError(f"recording {path.stem!r} has no picture to show"))
    return Response(png, media_type="image/png")  # no-store, as every /api answer (guard/headers.py)


@same_origin_only
async def download_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        path = _existing(request)
        if not settings.recordings_keep_identity and await asyncio.to_thread(holds_identity, path):
            raise ConflictError(f"recording {path.stem!r} holds the patient's identity and this server de-identifies "
                                "recordings; make a teaching copy with `medviz deidentify` and offer that")
    except MedvizError as error:
        return error_response(error)
    return FileResponse(path, media_type="application/vnd.medviz.recording", filename=path.name)


async def delete_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    sessions: SessionManager = request.app.state.sessions
    recording_id = request.path_params["recording_id"]
    try:
        if sessions.writing(recording_id):
            raise ConflictError(f"recording {recording_id!r} is still being written by its live session; delete it "
                                "once the session has ended")
        await asyncio.to_thread(delete_file, settings.recordings, recording_id)
    except MedvizError as error:
        return error_response(error)
    return Response(status_code=204)
