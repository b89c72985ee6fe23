"""The Starlette application: routes, the engine's lifetime and the guard in front.

Owns: `create_app` (routes, lifespan that loads the engine off the loop and builds the
session manager and the PACS threads (pacs/holding.py), sweeps expired videos and at shutdown kills the video
renders and shuts the PACS threads down, the Guard middleware
behind guard/headers.py's, the websocket counts of sockets/connections.py), `/api/health` and `/api/sessions`.
Does not own what the routes do (sockets/live.py, sockets/replay.py, recordings.py) or the checks (guard/security.py).

Routes: `/` static web/ (index.html); GET /api/health; GET /api/sessions;
GET /api/recordings; GET /api/recordings/{id}/thumbnail; GET|DELETE /api/recordings/{id}; POST
/api/recordings/{id}/video, GET /api/videos/{job} (teaching/videos.py); /api/pacs... (pacs_routes.py);
websockets /ws/session, /ws/watch/{session_id}, /ws/replay/{recording_id}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from medviz_core.engine.api import StreamEngine
from medviz_core.recording.file import tighten_folder
from medviz_core.types import GenerationParams, is_stand_in
from medviz_core.wire.server_frames import params_to_wire
from server import pacs_routes, recording_disk, recordings
from server.guard.headers import SecurityHeaders
from server.guard.security import Guard
from server.pacs import holding as pacs_holding
from server.pacs import start as pacs_start
from server.sessions import LocalSessions, SessionManager
from server.settings import Settings
from server.sockets import live, replay
from server.sockets.connections import Connections
from server.teaching import offline_routes, videos

log = logging.getLogger("medviz.server")

EngineLoader = Callable[[str], StreamEngine]


def _load_engine(ref: str) -> StreamEngine:
    from medviz_core.models.load import load_engine

    return load_engine(ref)


async def health_route(request: Request) -> Response:
    """The model, its device and the queue; `params`: the model's suggested sampling parameters (what a
    start request's unstated fields become), null where the model lives on workers elsewhere;
    `recordings`: "ok", or "unwritable" with `recordings_reason` (the last write this process tried failed,
    or the disk is below recordings_min_free_mb): the server still serves unrecorded sessions and replays."""
    sessions: SessionManager = request.app.state.sessions
    suggested: GenerationParams | None = request.app.state.suggested
    settings: Settings = request.app.state.settings
    disk, why = await asyncio.to_thread(recording_disk.health, settings.recordings, settings.recordings_min_free_mb)
    return JSONResponse({"model": sessions.model, "device": sessions.device, "queue": sessions.queue_length,
                         "stand_in": is_stand_in(sessions.model),
                         "params": None if suggested is None else params_to_wire(suggested),
                         "recordings": disk, "recordings_reason": why})


async def sessions_route(request: Request) -> Response:
    sessions: SessionManager = request.app.state.sessions
    return JSONResponse({"sessions": [asdict(info) for info in sessions.sessions()]})


def create_app(settings: Settings, engine: StreamEngine | None = None, loader: EngineLoader = _load_engine,
               sessions: SessionManager | None = None) -> Starlette:
    """The app. Pass `engine` (tests) or let the lifespan load `settings.model`; pass
    `sessions` to use another SessionManager implementation. With `settings.redis_url` the
    sessions are a stateless web node's (scale/sessions.py) and no engine is loaded."""
    settings.check()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        manager = sessions
        if manager is None and settings.redis_url:  # a stateless web node: the workers hold the model
            from server.scale.sessions import RedisSessions

            manager = await asyncio.to_thread(RedisSessions, settings, asyncio.get_running_loop())
        if manager is None:
            loaded = engine if engine is not None else await asyncio.to_thread(loader, settings.model)
            manager = LocalSessions(loaded, settings, asyncio.get_running_loop())
            app.state.suggested = loaded.suggested
        app.state.sessions = manager
        app.state.pacs_threads = pacs_holding.pacs_threads()  # PACS exchanges, off the loop's shared pool
        await asyncio.to_thread(tighten_folder, settings.recordings)  # one made looser before: 0700 again, logged
        log.info("serving model %s on %s", manager.model, manager.device)
        sweeping = asyncio.get_running_loop().create_task(app.state.videos.sweep_every())
        try:
            yield
        finally:
            sweeping.cancel()
            await app.state.videos.close()  # the renders killed, their folder removed
            app.state.pacs_threads.shutdown(wait=False, cancel_futures=True)  # a running exchange ends at its deadline
            await asyncio.to_thread(manager.close)

    routes: list[Any] = [
        Route("/api/health", health_route),
        Route("/api/sessions", sessions_route),
        Route("/api/recordings", recordings.list_route),
        *offline_routes.ROUTES,  # before the download's {recording_id:path}, which would take its path too
        Route("/api/recordings/{recording_id}/thumbnail", recordings.thumbnail_route, methods=["GET"]),
        Route("/api/recordings/{recording_id}/video", videos.start_route, methods=["POST"]),
        Route("/api/videos/{job}", videos.video_route, methods=["GET"]),
        *pacs_routes.ROUTES,  # 404 "no PACS configured" without --pacs (pacs_routes.py)
        Route("/api/recordings/{recording_id:path}", recordings.download_route, methods=["GET"]),
        Route("/api/recordings/{recording_id:path}", recordings.delete_route, methods=["DELETE"]),
        WebSocketRoute("/ws/session", live.session_route),
        WebSocketRoute("/ws/watch/{session_id:path}", live.watch_route),
        WebSocketRoute("/ws/replay/{recording_id:path}", replay.replay_route),
    ]
    if settings.web.is_dir():
        routes.append(Mount("/", app=StaticFiles(directory=settings.web, html=True), name="web"))
    guarded = [Middleware(SecurityHeaders), Middleware(Guard, settings=settings)]  # headers on refusals too
    app = Starlette(routes=routes, middleware=guarded, lifespan=lifespan)
    app.state.settings = settings
    app.state.suggested = None  # the loaded engine's suggested GenerationParams, once the lifespan has it
    app.state.videos = videos.VideoJobs(videos.RenderLimits(settings.video_render_limit_s,
                                                            settings.video_paused_limit_s))  # teaching/videos.py
    app.state.pacs_sends = pacs_routes.sends()  # one Send to PACS at a time (pacs_routes.py)
    app.state.pacs_retrievals = pacs_start.retrievals()  # PACS starts retrieving at once (pacs/start.py)
    app.state.players = offline_routes.builds()  # offline players built at once (teaching/offline_routes.py)
    app.state.connections = Connections(
        {"session": settings.max_session_sockets, "watch": settings.max_watch_sockets,
         "replay": settings.max_replay_sockets}, settings.max_sockets)
    return app
