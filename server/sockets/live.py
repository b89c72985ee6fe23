"""The live websocket routes: `/ws/session` (start or rejoin, then watch and cancel) and `/ws/watch/{id}`.

Owns: reading and validating the client's first frame: a `start` (size, types, limits, a study from the
PACS retrieved first (pacs/start.py; only with the PACS key), the images admitted under the image budget,
sampling and method checks, control tokens in the question and labels) or a `rejoin` (the owner back with its
owner key); with `/ws/session?rejoin=1` and after a rejoin, the `owner` frame (the owner key) to that socket
only, before the session's frames; then pumping the viewer's frames while listening for `cancel`,
`analyze` and `cancel_analysis` (answers, and refusals of them, go to the asking socket
through its `Outbox`, in the order the requests came; which answers a socket owes is
sockets/owed_answers.py's rule, shared with replays), and the close codes: after the
session's `end` 1000, after an error frame the code of its error (4400, 4415, 4500 ...),
4008 to a viewer that fell behind (its queued frames dropped, the close sent as soon as
the socket can take it, waiting up to close_timeout_s), 4408 once a socket that outlived
its session sat idle for idle_timeout_s. After the session's end a socket stays open until
its analysis jobs have answered (and, for `/ws/watch/{id}?stay=1`, until the client closes
it or it sits idle). Every refusal is an `error` frame with a code and a message, then a
close; never a trace. Open sockets are counted per kind (sockets/connections.py). Does not own the
queue (worker.py), fan-out (broadcast.py) or auth (guard/security.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from medviz_core.analyses.compute import AnalysisSource, job_id
from medviz_core.errors import AuthError, MedvizError, ProtocolError
from medviz_core.wire.client_frames import (
    ANALYSIS_COMMANDS,
    AnalyzeRequest,
    CancelAnalysisRequest,
    ClientFrame,
    RejoinRequest,
    StartRequest,
    parse_client_frame,
    peek_request_id,
)
from medviz_core.wire.codes import CloseCode, close_code_for, close_reason
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import ErrorFrame, OwnerFrame
from server.analysis_jobs import AnalysisJobs, Reply
from server.broadcast import Viewer, ViewerDropped
from server.guard.image_budget import check_images
from server.guard.security import NO_PACS_KEY, pacs_allowed, pacs_origin_problem
from server.pacs.start import from_pacs
from server.sessions import SessionManager, new_owner_key
from server.settings import Settings
from server.sockets.connections import Connections, Idle
from server.sockets.owed_answers import Answer, Owed, OwedAnswers, refusal

log = logging.getLogger("medviz.server")

__all__ = ["Outbox", "close_socket", "follow", "message_data", "read_start", "refuse", "session_route", "watch_route"]
OnMessage = Callable[[bytes | str], Awaitable[None]]
FollowOutcome = Literal["ended", "idle", "dropped", "left", "lost"]
"""How following a session ended: after its end, idle, dropped for falling behind, left by the client, or lost."""
DELIBERATE = (1000, 1001)  # a client that closes with these meant to leave; anything else lost its connection
GOING_AWAY = 1001  # a page unloading (a reload, too): an owner that can rejoin leaves with its grace period


class Outbox:
    """The asyncio side of one socket's owed analysis answers (owed_answers.OwedAnswers holds the rule).

    Replies come from any thread and are handed to the event loop; the answers go to `put`, in the
    order they came (default: this outbox's `queue`, which live sockets send from; a replay puts them
    among its commands). One `reply` serves all this socket's jobs, so cancel and withdraw find it.
    `idle` is set while the socket owes nothing (OwedAnswers.idle).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, put: Callable[[Answer], None] | None = None,
                 asker: str = "socket") -> None:
        self.loop = loop
        self.asker = f"{asker}-{id(self):x}"  # who asked, for the worker's bounds and turns
        self.queue: asyncio.Queue[Answer] = asyncio.Queue()
        self.put = put or self.queue.put_nowait
        self.owed = OwedAnswers()
        self.idle = asyncio.Event()
        self.idle.set()

        def reply(frame: AnalysisFrame, final: bool) -> None:
            self.loop.call_soon_threadsafe(self._deliver, frame, final)

        self.reply: Reply = reply

    @property
    def pending(self) -> dict[str, Owed]:
        """The jobs that still owe this socket an answer (or whose final answer is not sent yet)."""
        return self.owed.jobs

    def expect(self, source_key: str, job: str, request_id: str | None) -> Reply:
        """Note that `job` owes this socket an answer to request `request_id`; returns the reply for AnalysisJobs."""
        self.owed.asked(source_key, job, request_id)
        self._sync()
        return self.reply

    def request(self, jobs: AnalysisJobs, source: AnalysisSource, command: AnalyzeRequest,
                owner: bool = False) -> None:
        """Ask `jobs` for `command` on `source` (`owner`: the session's owner asks); a refusal owes nothing."""
        job = job_id(command)
        reply = self.expect(source.key, job, command.id)
        try:
            jobs.request(source, command, reply, self.asker, owner=owner)
        except MedvizError:
            self.dropped(job)
            raise

    def cancel(self, jobs: AnalysisJobs, source_key: str, job: str) -> None:
        """Cancel this socket's requests for `job` (RequestError if it asked for no such unfinished job)."""
        jobs.cancel(source_key, job, self.reply)

    def _deliver(self, frame: AnalysisFrame, final: bool) -> None:
        for answer in self.owed.arrived(frame, final):
            self.put(answer)

    def refuse(self, error: MedvizError, request_id: str | None = None) -> None:
        """An error frame for a refused command, sent after the answers queued before it."""
        self.loop.call_soon_threadsafe(self.put, refusal(error, request_id))

    def sent(self, answer: Answer) -> None:
        """`answer` went out to the socket."""
        if answer.final:
            self.answered(answer.job)

    def answered(self, job: str) -> None:
        """A final answer for `job` went out."""
        self.owed.sent(job)
        self._sync()

    def dropped(self, job: str) -> None:
        """The request just made for `job` was refused: it owes nothing."""
        self.owed.refused(job)
        self._sync()

    def withdraw(self, jobs: AnalysisJobs) -> None:
        """The socket is closing: the jobs still owing it an answer may stop if nobody else waits."""
        for source_key, job in self.owed.withdraw():
            jobs.withdraw(source_key, job, self.reply)
        self._sync()

    def _sync(self) -> None:
        if self.owed.idle:
            self.idle.set()
        else:
            self.idle.clear()


async def handle_analysis(command: ClientFrame, source: Callable[[], AnalysisSource], sessions: SessionManager,
                          outbox: Outbox, owner: bool = False) -> None:
    """Queue or answer an `analyze` (`owner`: the session's owner asks), or cancel one of this socket's jobs;
    MedvizError goes back as an error frame."""
    if isinstance(command, AnalyzeRequest):
        outbox.request(sessions.analyses, source(), command, owner=owner)
    elif isinstance(command, CancelAnalysisRequest):
        outbox.cancel(sessions.analyses, source().key, command.job)


def message_data(message: Mapping[str, object]) -> bytes | str:
    """The payload of a websocket.receive message: bytes, or str for a text message."""
    data = message.get("bytes")
    if isinstance(data, bytes):
        return data
    text = message.get("text")
    return text if isinstance(text, str) else ""


async def refuse(ws: WebSocket, code: str, message: str) -> None:
    """Send one error frame and close with a code that names the problem."""
    try:
        await ws.send_bytes(ErrorFrame(code, message).to_wire())
        await ws.close(close_code_for(code), close_reason(message))
    except (OSError, RuntimeError) as error:  # the client has gone: nobody is left to tell
        log.debug("refusal %s not delivered: %s", code, type(error).__name__)


async def read_start(ws: WebSocket, settings: Settings, sessions: SessionManager,
                     accept: tuple[str, ...] = ("start",)) -> tuple[StartRequest | RejoinRequest, int]:
    """The first frame, validated, and a start's images checked under the image budget: MedvizError on
    anything wrong. Returns the request and the bytes of image budget its run will hold (0 for a rejoin)."""
    try:
        message = await asyncio.wait_for(ws.receive(), settings.first_frame_timeout_s)
    except asyncio.TimeoutError:
        raise ProtocolError(f"no start frame within {settings.first_frame_timeout_s:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    request = parse_client_frame(message_data(message), settings.limits, accept=accept)
    if isinstance(request, RejoinRequest):
        return request, 0
    if not isinstance(request, StartRequest):  # parse_client_frame accepted only "start" and "rejoin"
        raise ProtocolError(f"expected a start frame; got {request.type!r}")
    if request.pacs is not None and settings.pacs is not None:
        problem = pacs_origin_problem(settings, ws.scope)  # this server's own pages only, not any loopback port
        if problem is not None:
            raise AuthError(problem)
        if not pacs_allowed(settings, ws.scope):
            raise AuthError(NO_PACS_KEY)  # a watch link carries the token only: the PACS takes the operator's key
    # a study from the PACS: its files retrieved (an upload's limits), then checked as uploads
    request = await from_pacs(settings.pacs, request, ws.app.state.pacs_retrievals, ws.app.state.pacs_threads,
                              settings.max_message_bytes, settings.image_wait_s)
    work = await check_images(request.images, sessions.images, settings.max_pixels, settings.max_decoded_bytes,
                              settings.image_wait_s)
    return request, work


async def session_route(ws: WebSocket) -> None:
    settings: Settings = ws.app.state.settings
    sessions: SessionManager = ws.app.state.sessions
    connections: Connections = ws.app.state.connections
    await ws.accept()
    try:
        with connections.hold("session"):
            request, work = await read_start(ws, settings, sessions, accept=("start", "rejoin"))
            key: str | None = None
            if isinstance(request, RejoinRequest):
                key = request.key
                session_id, viewer = request.session, sessions.rejoin(request.session, key)
            else:
                key = new_owner_key() if ws.query_params.get("rejoin") == "1" else None
                session_id, viewer = sessions.submit(request, work, owner_key=key)
            await _own(ws, settings, sessions, session_id, viewer, key)
    except MedvizError as error:
        log.info("start refused: %s", error.code)
        await refuse(ws, error.code, error.message)
    except WebSocketDisconnect:
        return


async def _own(ws: WebSocket, settings: Settings, sessions: SessionManager, session_id: str, viewer: Viewer,
               key: str | None = None) -> None:
    """Follow the session the socket started (or took back); a dropped or lost owner leaves with a grace
    period, and one with an owner `key` also when its page went away (1001: a reload looks like that)."""
    outbox = Outbox(asyncio.get_running_loop())

    async def on_message(data: bytes | str) -> None:
        command = parse_client_frame(data, settings.limits, accept=("cancel", *ANALYSIS_COMMANDS))
        if command.type == "cancel":
            sessions.cancel(session_id)
        else:
            await handle_analysis(command, lambda: sessions.live_source(session_id, owner=True), sessions, outbox,
                                  owner=True)

    outcome: FollowOutcome = "lost"
    try:
        if key is not None:
            await ws.send_bytes(OwnerFrame(session_id, key, settings.owner_grace_s).to_wire())
        outcome = await follow(ws, viewer, on_message, outbox, idle_s=settings.idle_timeout_s,
                               close_s=settings.close_timeout_s, away=key is not None)
    finally:
        outbox.withdraw(sessions.analyses)
        sessions.leave(session_id, viewer, owner=True, grace=outcome in ("dropped", "lost"))


async def watch_route(ws: WebSocket) -> None:
    settings: Settings = ws.app.state.settings
    sessions: SessionManager = ws.app.state.sessions
    connections: Connections = ws.app.state.connections
    session_id = ws.path_params["session_id"]
    await ws.accept()
    try:
        with connections.hold("watch"):
            viewer = sessions.watch(session_id)
            outbox = Outbox(asyncio.get_running_loop())

            async def on_message(data: bytes | str) -> None:
                command = parse_client_frame(data, settings.limits, accept=ANALYSIS_COMMANDS)
                await handle_analysis(command, lambda: sessions.live_source(session_id), sessions, outbox)

            outcome: FollowOutcome = "lost"
            try:
                outcome = await follow(ws, viewer, on_message, outbox, stay=ws.query_params.get("stay") == "1",
                                       idle_s=settings.idle_timeout_s, close_s=settings.close_timeout_s)
            finally:
                outbox.withdraw(sessions.analyses)
                sessions.leave(session_id, viewer, grace=outcome in ("dropped", "lost"))
    except MedvizError as error:
        await refuse(ws, error.code, error.message)


async def follow(ws: WebSocket, viewer: Viewer, on_message: OnMessage, outbox: Outbox | None = None,
                 stay: bool = False, idle_s: float | None = None, close_s: float = 30.0,
                 away: bool = False) -> FollowOutcome:
    """Pump the viewer's frames and analysis answers to the socket while reading client
    messages; after the session's end, close once no analysis is owed (`stay`: never) or the
    socket sat idle for `idle_s`. Returns how it ended: ended, idle, dropped, left or lost
    (`away`: a client that closed with 1001, going away, counts as lost)."""
    outbox = outbox or Outbox(asyncio.get_running_loop())
    idle = Idle(idle_s if idle_s is not None else float("inf"))
    pump = asyncio.create_task(_pump(ws, viewer, idle))
    listen = asyncio.create_task(_listen(ws, on_message, outbox, idle))
    dropped = asyncio.create_task(viewer.dropped.wait())
    answers = asyncio.create_task(_answer(ws, outbox, idle))
    waits: set[asyncio.Task[object]] = {pump, listen, dropped, answers}
    outcome: FollowOutcome
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if pump in done and pump.exception() is None:
            expired = asyncio.create_task(idle.expired(lambda: bool(outbox.pending)))
            settled = asyncio.create_task(_settled(outbox))
            waits |= {expired, settled}
            done, _ = await asyncio.wait({listen, expired} | (set() if stay else {settled}),
                                         return_when=asyncio.FIRST_COMPLETED)
            outcome = "left" if listen in done else "idle" if expired in done else "ended"
        elif dropped in done or (pump in done and isinstance(pump.exception(), ViewerDropped)):
            outcome = "dropped"
        else:
            outcome = "left" if listen in done else "lost"
    finally:
        for task in waits:
            task.cancel()
    if outcome == "left":
        code = listen.result() if listen.done() and not listen.cancelled() and listen.exception() is None else 1006
        return "left" if code in DELIBERATE and not (away and code == GOING_AWAY) else "lost"
    if outcome == "dropped":
        await close_socket(ws, CloseCode.TOO_SLOW, viewer.too_slow_reason, close_s)
    elif outcome == "idle":
        await close_socket(ws, CloseCode.IDLE, f"no message either way for {idle.timeout_s:g} s", close_s)
    elif outcome == "ended":
        await close_socket(ws, *viewer.close, close_s)
    return outcome


async def _settled(outbox: Outbox) -> None:
    """Returns once every analysis this socket asked for has answered and been sent."""
    while True:
        await outbox.idle.wait()
        await asyncio.sleep(0)  # let a just-queued answer be sent first
        if outbox.idle.is_set() and outbox.queue.empty():
            return


async def _answer(ws: WebSocket, outbox: Outbox, idle: Idle) -> None:
    while True:
        answer = await outbox.queue.get()
        await ws.send_bytes(answer.data)
        idle.touch()
        outbox.sent(answer)


async def _pump(ws: WebSocket, viewer: Viewer, idle: Idle) -> None:
    async for frame in viewer.frames():
        await ws.send_bytes(frame)
        idle.touch()


async def _listen(ws: WebSocket, on_message: OnMessage, outbox: Outbox, idle: Idle) -> int:
    """Read client messages until the client closes; returns its close code."""
    while True:
        message = await ws.receive()
        idle.touch()
        if message["type"] == "websocket.disconnect":
            return int(message.get("code", 1006))
        data = message_data(message)
        try:
            await on_message(data)
        except MedvizError as error:
            outbox.refuse(error, peek_request_id(data))


async def close_socket(ws: WebSocket, code: int, reason: str, wait_s: float) -> None:
    """Close once the socket can take the close frame (behind what it already holds), waiting up to `wait_s`."""
    if ws.application_state == WebSocketState.DISCONNECTED:
        return
    try:
        await asyncio.wait_for(ws.close(code, close_reason(reason)), wait_s)
    except (asyncio.TimeoutError, OSError, RuntimeError, WebSocketDisconnect) as error:  # gone, or never drained
        log.info("close %d not delivered: %s", code, type(error).__name__)
