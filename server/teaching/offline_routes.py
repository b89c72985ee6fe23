"""The offline player's HTTP route: GET /api/recordings/{id}/player.html downloads a recording as one
self-contained HTML file, the same bytes `medviz html` writes (offline_player.py).

Owns the route and its bound: the id is checked before any path is built, the guard and a foreign Origin's 403
apply, as for recordings.py's download; errors are recordings.py's JSON (400 bad id, 404 missing). A page is
built whole in memory (3 to 4 times its recording), so at most PLAYERS_AT_ONCE are built at once (`builds`, one
per app); a request meanwhile gets 503 `busy` at once. Does not own building the page (offline_player.py).
"""

from __future__ import annotations

import asyncio
import threading

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from medviz_core.errors import BusyError, MedvizError
from medviz_core.recording.file import recording_path
from server.guard.security import same_origin_only
from server.recordings import error_response
from server.settings import Settings
from server.teaching.offline_player import player_of

PLAYERS_AT_ONCE = 2  # offline players built at once (each holds 3-4x its recording in memory while built)


def builds() -> threading.BoundedSemaphore:
    """An app's slots for building offline players (app.state.players)."""
    return threading.BoundedSemaphore(PLAYERS_AT_ONCE)


@same_origin_only
async def player_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    slots: threading.BoundedSemaphore = request.app.state.players
    try:
        path = recording_path(settings.recordings, request.path_params["recording_id"])
        if not slots.acquire(blocking=False):
            raise BusyError(f"{PLAYERS_AT_ONCE} offline players are being built; try again in a moment")
        try:
            page = await asyncio.to_thread(player_of, path, settings.web)
        finally:
            slots.release()
    except MedvizError as error:
        return error_response(error)
    return Response(page, media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{path.stem}.html"'})


ROUTES = [Route("/api/recordings/{recording_id}/player.html", player_route, methods=["GET"])]
"""Placed before recordings.py's `/api/recordings/{recording_id:path}`, which would take the path too."""
