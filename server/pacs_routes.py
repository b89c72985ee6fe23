"""The PACS's HTTP routes: the browser's search, a study's series with thumbnails, and Send to PACS.

Owns: GET /api/pacs (whether a PACS is configured, 200 either way: its host and port only, never a credential), GET
/api/pacs/studies (QIDO-RS through PacsClient.find_studies: patient_id, patient_name, accession, date_from,
date_to, modality, offset), GET /api/pacs/studies/{study}/series (each series with its instances, their view
labels, which can be opened and why not, and the views chosen by default), GET
/api/pacs/studies/{study}/series/{series}/instances/{sop}/thumbnail (the PACS's rendered image, no-store), GET
/api/pacs/sendable?recording=ID (whether a replay's recording may be sent, and why not) and POST /api/pacs/send
({session, key, index, method} from a live session's owner, or {recording, index, method}: pinned.send_token).
Every exchange runs on the app's own PACS threads (app.state.pacs_threads, pacs/holding.py), never the loop's shared
default pool; every other route answers 404 "no PACS configured" without one, 403 to any Origin but the server's own
or an allowed one (guard/security.pacs_origin_problem: not any loopback page), 415 to a send whose body is not
declared JSON, and 403 NO_PACS_KEY to a request without the PACS key (guard/security.py:
share and watch links carry the token only; GET /api/pacs then answers {configured: true, allowed: false}), behind
the same Guard (token, Host) as every route. A send holds the app's one send (app.state.pacs_sends) until its
thread ends, even when its request is cancelled (pacs/holding.py). A PacsError is one JSON
`{"error": {"code", "message", "kind"}}` with a fitting status: 502 for an unreachable PACS, a bad or too large
answer, a refused store, and the PACS refusing medviz's credentials (the browser's own auth never goes on to the
PACS), 504 for a timeout, 404 for a study that is gone, 400 for a query it refuses, 422 for a study with no image
medviz reads. Does not own DICOMweb (pacs/client.py), choosing views (pacs/views.py), opening a study for a start
(pacs/start.py) or what a send builds (pacs/pinned.py).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from medviz_core.analyses.compute import AnalysisSource
from medviz_core.errors import BusyError, MedvizError, NotFoundError, RequestError
from medviz_core.wire.client_frames import check_uid
from medviz_core.wire.codes import ErrorCode
from server.guard.security import NO_PACS_KEY, pacs_allowed, pacs_origin_problem
from server.pacs.client import InstanceMatch, PacsClient, StudyQuery
from server.pacs.config import PacsConfig
from server.pacs.errors import (
    PacsConfigError,
    PacsError,
    PacsNoImages,
    PacsNotFound,
    PacsQueryError,
    PacsTimeout,
)
from server.pacs.holding import on_pacs_thread, run_holding
from server.pacs.pinned import SendAnswer, recording_for_send, send_token
from server.pacs.start import NO_PACS
from server.pacs.views import choose_views
from server.recordings import error_response
from server.sessions import SessionManager
from server.settings import Settings

QUERY_FIELDS = ("patient_id", "patient_name", "accession", "modality")
MAX_QUERY_CHARS = 64  # a search field (DICOM's LO and PN values are at most 64 characters)
MAX_SEND_BODY = 4096  # a send request's JSON body
MAX_OFFSET = 10_000
MAX_FIELD_CHARS = 128  # a send request's session, key, recording or method
JSON_ONLY = "a send request is a JSON body: Content-Type: application/json"
SESSION_ENDED = ("this session has ended and is no longer kept live: send from its recording instead "
                 "(the library's replay of it)")
Handler = Callable[[Request], Awaitable[Response]]


def _status(error: PacsError) -> int:
    if isinstance(error, PacsTimeout):
        return 504
    if isinstance(error, PacsNotFound):
        return 404
    if isinstance(error, (PacsQueryError, PacsConfigError)):
        return 400
    if isinstance(error, PacsNoImages):
        return 422
    return 502  # unreachable, unauthorized, bad or too large answer, a refused store


def pacs_error(error: MedvizError) -> JSONResponse:
    """One JSON error; a PacsError's status says whose fault it was (the PACS's: 502/504, never 401)."""
    if not isinstance(error, PacsError):
        return error_response(error)
    return JSONResponse({"error": {"code": str(error.code), "message": error.message, "kind": error.kind}},
                        status_code=_status(error))


def _forbidden(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": ErrorCode.UNAUTHORIZED.value, "message": message}}, status_code=403)


def pacs_route(route: Callable[[Request, PacsConfig], Awaitable[Response]]) -> Handler:
    """`route` with the PACS's config: 403 for any Origin but the server's own (or an allowed one), 404 without a
    PACS, 403 without the PACS key, each MedvizError as JSON."""
    @functools.wraps(route)
    async def checked(request: Request) -> Response:
        settings: Settings = request.app.state.settings
        problem = pacs_origin_problem(settings, request.scope)
        if problem is not None:
            return _forbidden(problem)
        try:
            if settings.pacs is None:
                raise NotFoundError(NO_PACS)
            if not pacs_allowed(settings, request.scope):  # a share or watch link: the token without the PACS key
                return _forbidden(NO_PACS_KEY)
            return await route(request, settings.pacs)
        except MedvizError as error:
            return pacs_error(error)

    return checked


def _exchange(config: PacsConfig, work: Callable[[PacsClient], Any]) -> Any:
    with PacsClient(config) as client:
        return work(client)


async def _ask(request: Request, config: PacsConfig, work: Callable[[PacsClient], Any]) -> Any:
    """`work` with a client of its own, on one of the app's PACS threads (httpx is synchronous; the loop keeps
    serving, and a slow PACS holds none of the threads the other routes use)."""
    return await on_pacs_thread(request.app.state.pacs_threads, _exchange, config, work)


async def pacs_info_route(request: Request) -> Response:
    """Whether this server has a PACS (200 either way: the page asks at every load) and whether this request may use
    it (the PACS key); if both, its host and port."""
    settings: Settings = request.app.state.settings
    problem = pacs_origin_problem(settings, request.scope)
    if problem is not None:
        return _forbidden(problem)
    config = settings.pacs
    if config is None:
        return JSONResponse({"configured": False})
    if not pacs_allowed(settings, request.scope):
        return JSONResponse({"configured": True, "allowed": False})
    parts = urlsplit(config.url)
    host = parts.hostname or ""
    return JSONResponse({"configured": True, "allowed": True,
                         "host": host if parts.port is None else f"{host}:{parts.port}",
                         "max_results": config.max_results, "page_size": config.page_size})


def study_query(params: Any) -> tuple[StudyQuery, int]:
    """The search form's fields as a StudyQuery and its offset; RequestError for an over-long field or a bad offset."""
    values: dict[str, str | None] = {}
    for name in (*QUERY_FIELDS, "date_from", "date_to"):
        value = str(params.get(name, "")).strip()
        if len(value) > MAX_QUERY_CHARS:
            raise RequestError(f"the search field {name} is at most {MAX_QUERY_CHARS} characters; got {len(value)}")
        values[name] = value or None
    start, end = (values.pop(name) for name in ("date_from", "date_to"))
    dates = None if start is None and end is None else (
        _date(start) if start == end else f"{_date(start)}-{_date(end)}")
    offset_text = str(params.get("offset", "0")).strip() or "0"
    if not offset_text.isdigit() or int(offset_text) > MAX_OFFSET:
        raise RequestError(f"offset must be a whole number in 0..{MAX_OFFSET}; got {offset_text[:20]!r}")
    return StudyQuery(patient_id=values["patient_id"], patient_name=values["patient_name"],
                      accession=values["accession"], study_date=dates, modality=values["modality"]), int(offset_text)


def _date(value: str | None) -> str:
    """A date as the form gives it (YYYY-MM-DD, or YYYYMMDD) in DICOM's YYYYMMDD; "" for an open end."""
    return "" if value is None else value.replace("-", "")


@pacs_route
async def studies_route(request: Request, config: PacsConfig) -> Response:
    query, offset = study_query(request.query_params)
    page = await _ask(request, config, lambda client: client.find_studies(query, offset))
    return JSONResponse({"studies": [{**asdict(study), "modalities": list(study.modalities)} for study in page.studies],
                         "offset": page.offset, "more": page.more, "capped": page.capped,
                         "page_size": config.page_size, "max_results": config.max_results})


def _instance_row(instance: InstanceMatch, chosen: dict[str, str], names: dict[str, str]) -> dict[str, Any]:
    """One instance as the browser lists it: its view label, whether it opens (and why not), chosen by default."""
    try:
        label, usable, why = choose_views([instance], [instance.sop_uid], descriptions=names)[0].label, True, ""
    except PacsError as error:
        label, usable, why = "", False, error.message
    return {"uid": instance.sop_uid, "number": instance.instance_number, "label": chosen.get(instance.sop_uid, label),
            "view_position": instance.view_position, "rows": instance.rows, "columns": instance.columns,
            "frames": instance.frames, "usable": usable, "why": why, "default": instance.sop_uid in chosen}


@pacs_route
async def series_route(request: Request, config: PacsConfig) -> Response:
    study = check_uid(request.path_params["study"], "the study")

    def read(client: PacsClient) -> tuple[Any, Any]:
        return client.series(study), client.instances(study)

    series, instances = await _ask(request, config, read)
    names = {match.series_uid: match.description for match in series}
    try:
        chosen = {view.sop_uid: view.label for view in choose_views(instances, study_uid=study, descriptions=names)}
        why = ""
    except PacsError as error:
        chosen, why = {}, error.message
    rows = [{**asdict(match), "instances": [_instance_row(i, chosen, names) for i in instances
                                            if i.series_uid == match.series_uid]} for match in series]
    return JSONResponse({"study": study, "series": rows, "why": why})


@pacs_route
async def thumbnail_route(request: Request, config: PacsConfig) -> Response:
    study, series, sop = (check_uid(request.path_params[name], f"the {name}") for name in ("study", "series", "sop"))
    data: bytes = await _ask(request, config, lambda client: client.thumbnail(study, series, sop))
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return Response(data, media_type=kind, headers={"Cache-Control": "no-store"})


@pacs_route
async def sendable_route(request: Request, config: PacsConfig) -> Response:
    settings: Settings = request.app.state.settings
    try:
        await on_pacs_thread(request.app.state.pacs_threads, recording_for_send, settings.recordings,
                             request.query_params.get("recording", ""), settings.recordings_keep_identity)
    except RequestError as error:
        return JSONResponse({"ok": False, "why": error.message})
    return JSONResponse({"ok": True, "why": ""})


async def _body(request: Request) -> dict[str, Any]:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_SEND_BODY:
            raise RequestError(f"a send request is at most {MAX_SEND_BODY} bytes of JSON")
    try:
        body = json.loads(data or b"null")
    except (ValueError, UnicodeDecodeError):
        raise RequestError("a send request is a JSON object: {session, key, index, method} or "
                           "{recording, index, method}") from None
    if not isinstance(body, dict):
        raise RequestError("a send request is a JSON object: {session, key, index, method} or "
                           "{recording, index, method}")
    return body


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    too_long = isinstance(value, str) and not 1 <= len(value) <= MAX_FIELD_CHARS
    if not isinstance(value, kind) or isinstance(value, bool) or too_long:
        raise RequestError(f"field {name!r} of a send request must be a {'number' if kind is int else 'string'}")
    return value


def sends() -> threading.Lock:
    """An app's one send at a time (app.state.pacs_sends)."""
    return threading.Lock()


def _owned_source(sessions: SessionManager, session: str, key: object) -> AnalysisSource:
    """A live session's owner's view, once `key` proves the owner (blocking: a Redis round trip, the whole log); a
    session no longer listed (linger_s past its end) says so and points to its recording."""
    if not isinstance(key, str) or not sessions.is_owner(session, key):
        if not any(info.id == session for info in sessions.sessions()):
            raise RequestError(SESSION_ENDED)
        raise RequestError("only the session's owner may send it to the PACS (a watcher sees de-identified "
                           "headers, which belong to no study there)")
    return sessions.live_source(session, owner=True)


@pacs_route
async def send_route(request: Request, config: PacsConfig) -> Response:
    settings: Settings = request.app.state.settings
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        return JSONResponse({"error": {"code": ErrorCode.BAD_REQUEST.value, "message": JSON_ONLY}}, status_code=415)
    threads = request.app.state.pacs_threads
    body = await _body(request)
    index, method = _field(body, "index", int), _field(body, "method", str)
    if "recording" in body:
        source = await on_pacs_thread(threads, recording_for_send, settings.recordings,
                                      _field(body, "recording", str), settings.recordings_keep_identity)
    else:
        session, key = _field(body, "session", str), body.get("key")
        source = await on_pacs_thread(threads, _owned_source, request.app.state.sessions, session, key)
    lock: threading.Lock = request.app.state.pacs_sends
    if not lock.acquire(blocking=False):
        raise BusyError("another Send to PACS is under way; try again in a moment")
    answer: SendAnswer = await run_holding(threads, lock.release, send_token, config, source, index, method)
    if answer.refused:  # a partial store: the error's line, and what became of each object
        return JSONResponse({"error": {"code": "error", "kind": "store_partial", "message": answer.message},
                             **answer.to_json()}, status_code=502)
    return JSONResponse(answer.to_json())


ROUTES = [
    Route("/api/pacs", pacs_info_route, methods=["GET"]),
    Route("/api/pacs/studies", studies_route, methods=["GET"]),
    Route("/api/pacs/studies/{study}/series", series_route, methods=["GET"]),
    Route("/api/pacs/studies/{study}/series/{series}/instances/{sop}/thumbnail", thumbnail_route, methods=["GET"]),
    Route("/api/pacs/sendable", sendable_route, methods=["GET"]),
    Route("/api/pacs/send", send_route, methods=["POST"]),
]
