"""The offline player's HTTP route: GET /api/recordings/{id}/player.html downloads a recording as one
self-contained HTML file, the same bytes `medviz html` writes (offline_player.py).

Owns the route only: the id is checked before any path is built and the guard applies, as for
recordings.py's download; errors are recordings.py's JSON (400 bad id, 404 missing). Does not own
building the page (offline_player.py).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from medviz_core.errors import MedvizError
from medviz_core.recording.file import recording_path
from server.recordings import error_response
from server.settings import Settings
from server.teaching.offline_player import player_of


async def player_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        path = recording_path(settings.recordings, request.path_params["recording_id"])
        page = await asyncio.to_thread(player_of, path, settings.web)
    except MedvizError as error:
        return error_response(error)
    return Response(page, media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{path.stem}.html"'})


ROUTES = [Route("/api/recordings/{recording_id}/player.html", player_route, methods=["GET"])]
"""Placed before recordings.py's `/api/recordings/{recording_id:path}`, which would take the path too."""
