"""The live websocket routes: `/ws/session` (start, then watch and cancel) and `/ws/watch/{id}`.

Owns: reading and validating the client's start frame (size, types, limits, the images
admitted under the image budget, sampling and method checks, control tokens in the
question and labels), then pumping the viewer's frames while listening for `cancel`,
`analyze` and `cancel_analysis` (answers, and refusals of them, go to the asking socket
through its `Outbox`, in the order the requests came), and the close codes: after the
session's `end` 1000, after an error frame the code of its error (4400, 4415, 4500 ...),
4008 to a viewer that fell behind (its queued frames dropped, the close sent as soon as
the socket can take it, waiting up to close_timeout_s), 4408 once a socket that outlived
its session sat idle for idle_timeout_s. After the session's end a socket stays open until
its analysis jobs have answered (and, for `/ws/watch/{id}?stay=1`, until the client closes
it or it sits idle). Every refusal is an `error` frame with a code and a message, then a
close; never a trace. Open sockets are counted per kind (connections.py). Does not own the
queue (worker.py), fan-out (broadcast.py) or auth (security.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Mapping

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from medviz_core import frames
from medviz_core.engine import check_params
from medviz_core.prompts import check_label, check_question
from medviz_core.errors import MedvizError, ProtocolError
from medviz_core.frames import AnalyzeRequest, CancelAnalysisRequest, ClientFrame, StartRequest
from medviz_core.relevancy import check_methods

from .analysis_jobs import AnalysisJobs, Reply
from .analysis_run import AnalysisSource, job_id
from .broadcast import Viewer, ViewerDropped
from .close_codes import CLOSE_CODES, CLOSE_IDLE, CLOSE_TOO_SLOW, close_code, close_reason
from .connections import Connections, Idle
from .image_budget import check_images
from .requests import ANALYSIS_COMMANDS, parse_client_frame
from .sessions import SessionManager
from .settings import Settings

log = logging.getLogger("medviz.server")

__all__ = ["CLOSE_CODES", "Outbox", "close_socket", "follow", "message_data", "read_start", "refuse", "session_route", "watch_route"]
OnMessage = Callable[[bytes | str], Awaitable[None]]
DELIBERATE = (1000, 1001)  # a client that closes with these meant to leave; anything else lost its connection


class Outbox:
    """Analysis answers for one socket, handed over from any thread; knows which jobs still owe one.

    Every `expect` is owed exactly one final answer (AnalysisJobs gives each request one), so
    a job asked again before its earlier final answer went out stays pending until both have.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.asker = f"socket-{id(self):x}"  # who asked, for the worker's bounds and turns
        self.queue: asyncio.Queue[tuple[bytes, bool, str]] = asyncio.Queue()
        self.pending: dict[str, tuple[str, Reply, int]] = {}  # job -> (source key, its reply, finals owed)
        self.idle = asyncio.Event()
        self.idle.set()

    def expect(self, source_key: str, job: str) -> Reply:
        """Note that `job` owes this socket an answer; returns the reply callable for AnalysisJobs."""
        if job in self.pending:  # asked again: one reply per socket and job, so withdraw finds them all
            key, known, owed = self.pending[job]
            self.pending[job] = (key, known, owed + 1)
            return known

        def reply(frame: bytes, final: bool) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (frame, final, job))

        self.pending[job] = (source_key, reply, 1)
        self.idle.clear()
        return reply

    def refuse(self, error: MedvizError) -> None:
        """An error frame for a refused command, sent after the answers queued before it."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (frames.encode_error(error.code, error.message), False, ""))

    def answered(self, job: str) -> None:
        """One final answer for `job` went out (or its request was refused)."""
        if job in self.pending:
            key, reply, owed = self.pending[job]
            if owed > 1:
                self.pending[job] = (key, reply, owed - 1)
            else:
                del self.pending[job]
        if not self.pending:
            self.idle.set()

    def withdraw(self, jobs: AnalysisJobs) -> None:
        """The socket is closing: the jobs still owing it an answer may stop if nobody else waits."""
        for job, (source_key, reply, _) in list(self.pending.items()):
            jobs.withdraw(source_key, job, reply)
        self.pending.clear()
        self.idle.set()


async def handle_analysis(command: ClientFrame, source: Callable[[], AnalysisSource], sessions: SessionManager,
                          outbox: Outbox) -> None:
    """Queue or answer an `analyze`, or cancel a job; MedvizError goes back as an error frame."""
    if isinstance(command, AnalyzeRequest):
        job = job_id(command)
        found = source()
        try:
            sessions.analyses.request(found, command, outbox.expect(found.key, job), outbox.asker)
        except MedvizError:
            outbox.answered(job)
            raise
    elif isinstance(command, CancelAnalysisRequest):
        sessions.analyses.cancel(source().key, command.job)


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
        await ws.send_bytes(frames.encode_error(code, message))
        await ws.close(close_code(code), close_reason(message))
    except (OSError, RuntimeError) as error:  # the client has gone: nobody is left to tell
        log.debug("refusal %s not delivered: %s", code, type(error).__name__)


async def read_start(ws: WebSocket, settings: Settings, sessions: SessionManager) -> tuple[StartRequest, int]:
    """The first frame, validated, and its images checked under the image budget: MedvizError on
    anything wrong. Returns the request and the bytes of image budget its run will hold."""
    try:
        message = await asyncio.wait_for(ws.receive(), settings.first_frame_timeout_s)
    except asyncio.TimeoutError:
        raise ProtocolError(f"no start frame within {settings.first_frame_timeout_s:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    request = parse_client_frame(message_data(message), settings.limits, accept=("start",))
    if not isinstance(request, StartRequest):  # parse_client_frame accepted only "start"
        raise ProtocolError(f"expected a start frame; got {request.type!r}")
    check_params(request.max_new_tokens, request.temperature, request.top_p, request.top_k,
                 request.repetition_penalty, request.seed)
    check_methods(request.methods)
    if request.question is not None:
        check_question(request.question)
    for label in request.labels:
        check_label(label)
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
            request, work = await read_start(ws, settings, sessions)
            session_id, viewer = sessions.submit(request, work)
            await _own(ws, settings, sessions, session_id, viewer)
    except MedvizError as error:
        log.info("start refused: %s", error.code)
        await refuse(ws, error.code, error.message)
    except WebSocketDisconnect:
        return


async def _own(ws: WebSocket, settings: Settings, sessions: SessionManager, session_id: str, viewer: Viewer) -> None:
    """Follow the session the socket started; a dropped or lost viewer leaves with a grace period."""
    outbox = Outbox(asyncio.get_running_loop())

    async def on_message(data: bytes | str) -> None:
        command = parse_client_frame(data, settings.limits, accept=("cancel", *ANALYSIS_COMMANDS))
        if command.type == "cancel":
            sessions.cancel(session_id)
        else:
            await handle_analysis(command, lambda: sessions.live_source(session_id), sessions, outbox)

    outcome = "lost"
    try:
        outcome = await follow(ws, viewer, on_message, outbox, idle_s=settings.idle_timeout_s,
                               close_s=settings.close_timeout_s)
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

            outcome = "lost"
            try:
                outcome = await follow(ws, viewer, on_message, outbox, stay=ws.query_params.get("stay") == "1",
                                       idle_s=settings.idle_timeout_s, close_s=settings.close_timeout_s)
            finally:
                outbox.withdraw(sessions.analyses)
                sessions.leave(session_id, viewer, grace=outcome in ("dropped", "lost"))
    except MedvizError as error:
        await refuse(ws, error.code, error.message)


async def follow(ws: WebSocket, viewer: Viewer, on_message: OnMessage, outbox: Outbox | None = None,
                 stay: bool = False, idle_s: float | None = None, close_s: float = 30.0) -> str:
    """Pump the viewer's frames and analysis answers to the socket while reading client
    messages; after the session's end, close once no analysis is owed (`stay`: never) or the
    socket sat idle for `idle_s`. Returns how it ended: ended, idle, dropped, left or lost."""
    outbox = outbox or Outbox(asyncio.get_running_loop())
    idle = Idle(idle_s if idle_s is not None else float("inf"))
    pump = asyncio.create_task(_pump(ws, viewer, idle))
    listen = asyncio.create_task(_listen(ws, on_message, outbox, idle))
    dropped = asyncio.create_task(viewer.dropped.wait())
    answers = asyncio.create_task(_answer(ws, outbox, idle))
    waits: set[asyncio.Task[object]] = {pump, listen, dropped, answers}
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
        return "left" if code in DELIBERATE else "lost"
    if outcome == "dropped":
        await close_socket(ws, CLOSE_TOO_SLOW, viewer.too_slow_reason, close_s)
    elif outcome == "idle":
        await close_socket(ws, CLOSE_IDLE, f"no message either way for {idle.timeout_s:g} s", close_s)
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
        frame, final, job = await outbox.queue.get()
        await ws.send_bytes(frame)
        idle.touch()
        if final:
            outbox.answered(job)


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
        try:
            await on_message(message_data(message))
        except MedvizError as error:
            outbox.refuse(error)


async def close_socket(ws: WebSocket, code: int, reason: str, wait_s: float) -> None:
    """Close once the socket can take the close frame (behind what it already holds), waiting up to `wait_s`."""
    if ws.application_state == WebSocketState.DISCONNECTED:
        return
    try:
        await asyncio.wait_for(ws.close(code, close_reason(reason)), wait_s)
    except (asyncio.TimeoutError, OSError, RuntimeError) as error:  # gone, or never drained: uvicorn drops it
        log.info("close %d not delivered: %s", code, type(error).__name__)
