"""HTTP routes for recordings: list, download, delete. Ids are validated before any path is built.

Owns: the JSON shapes of `/api/recordings` and the mapping of MedvizError to HTTP status
(400 bad id, 404 missing, 409 deleting a recording a live session is still writing).
Does not own the file format (medviz_core/recording.py) or replays (replay.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from medviz_core.errors import ConflictError, MedvizError, NotFoundError
from medviz_core.recording import delete_recording as delete_file
from medviz_core.recording import list_recordings, recording_path

from .sessions import SessionManager
from .settings import Settings

STATUS = {"bad_request": 400, "not_found": 404, "unauthorized": 401, "busy": 503, "too_large": 413, "conflict": 409}


def error_response(error: MedvizError) -> JSONResponse:
    return JSONResponse({"error": {"code": error.code, "message": error.message}},
                        status_code=STATUS.get(error.code, 500))


async def list_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    infos = await asyncio.to_thread(list_recordings, settings.recordings)
    return JSONResponse({"recordings": [asdict(info) for info in infos]})


async def download_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        path = recording_path(settings.recordings, request.path_params["recording_id"])
        if not path.is_file():
            raise NotFoundError(f"recording {path.stem!r} does not exist")
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
