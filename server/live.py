"""The live websocket routes: `/ws/session` (start, then watch and cancel) and `/ws/watch/{id}`.

Owns: reading and validating the client's start frame (size, types, limits, the images
decoded off the loop with the pixel limit, sampling and method checks), then pumping the
viewer's frames while listening for `cancel`, `analyze` and `cancel_analysis` (answers go
to the asking socket through its `Outbox`), and the close codes. After the session's
`end` a socket stays open until its analysis jobs have answered (and, for
`/ws/watch/{id}?stay=1`, until the client closes it). Every refusal is an
`error` frame with a code and a message, then a close; never a trace. Does not own the
queue (worker.py), fan-out (broadcast.py) or auth (security.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable, Mapping

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from medviz_core import frames
from medviz_core.engine import check_params
from medviz_core.prompts import check_label, check_question
from medviz_core.errors import MedvizError, ProtocolError
from medviz_core.frames import AnalyzeRequest, CancelAnalysisRequest, ClientFrame, StartRequest
from medviz_core.imaging import load_image
from medviz_core.relevancy import check_methods

from .analysis_jobs import AnalysisJobs, Reply
from .analysis_run import AnalysisSource, job_id
from .broadcast import CLOSE_TOO_SLOW, Viewer, ViewerDropped, close_reason
from .requests import ANALYSIS_COMMANDS, parse_client_frame
from .sessions import SessionManager
from .settings import Settings

log = logging.getLogger("medviz.server")

CLOSE_CODES = {"bad_request": 4400, "bad_frame": 4400, "bad_image": 4415, "too_large": 4413,
               "not_found": 4404, "busy": 4429, "unauthorized": 4001, "internal": 4500}


OnMessage = Callable[[bytes | str], Awaitable[None]]


class Outbox:
    """Analysis answers for one socket, handed over from any thread; knows which jobs still owe one.

    Every `expect` is owed exactly one final answer (AnalysisJobs gives each request one), so
    a job asked again before its earlier final answer went out stays pending until both have.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
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
            sessions.analyses.request(found, command, outbox.expect(found.key, job))
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
    with contextlib.suppress(Exception):
        await ws.send_bytes(frames.encode_error(code, message))
        await ws.close(CLOSE_CODES.get(code, 4400), close_reason(message))


async def read_start(ws: WebSocket, settings: Settings) -> tuple[StartRequest, list[Any]]:
    """The first frame, validated, and its images decoded: MedvizError on anything wrong."""
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
    images = [await asyncio.to_thread(load_image, data, max_pixels=settings.max_pixels) for data in request.images]
    return request, images


async def session_route(ws: WebSocket) -> None:
    settings: Settings = ws.app.state.settings
    sessions: SessionManager = ws.app.state.sessions
    await ws.accept()
    try:
        request, images = await read_start(ws, settings)
        session_id, viewer = sessions.submit(request, images)
    except MedvizError as error:
        log.info("start refused: %s", error.code)
        await refuse(ws, error.code, error.message)
        return
    except WebSocketDisconnect:
        return

    outbox = Outbox(asyncio.get_running_loop())

    async def on_message(data: bytes | str) -> None:
        command = parse_client_frame(data, settings.limits, accept=("cancel", *ANALYSIS_COMMANDS))
        if command.type == "cancel":
            sessions.cancel(session_id)
        else:
            await handle_analysis(command, lambda: sessions.live_source(session_id), sessions, outbox)

    try:
        await follow(ws, viewer, on_message, outbox)
    finally:
        outbox.withdraw(sessions.analyses)
        sessions.leave(session_id, viewer, owner=True)


async def watch_route(ws: WebSocket) -> None:
    settings: Settings = ws.app.state.settings
    sessions: SessionManager = ws.app.state.sessions
    session_id = ws.path_params["session_id"]
    await ws.accept()
    try:
        viewer = sessions.watch(session_id)
    except MedvizError as error:
        await refuse(ws, error.code, error.message)
        return

    outbox = Outbox(asyncio.get_running_loop())

    async def on_message(data: bytes | str) -> None:
        command = parse_client_frame(data, settings.limits, accept=ANALYSIS_COMMANDS)
        await handle_analysis(command, lambda: sessions.live_source(session_id), sessions, outbox)

    try:
        await follow(ws, viewer, on_message, outbox, stay=ws.query_params.get("stay") == "1")
    finally:
        outbox.withdraw(sessions.analyses)
        sessions.leave(session_id, viewer)


async def follow(ws: WebSocket, viewer: Viewer, on_message: OnMessage, outbox: Outbox | None = None,
                 stay: bool = False) -> None:
    """Pump the viewer's frames and analysis answers to the socket while reading client
    messages; after the session's end, close once no analysis is owed (`stay`: never)."""
    outbox = outbox or Outbox(asyncio.get_running_loop())
    pump = asyncio.create_task(_pump(ws, viewer))
    listen = asyncio.create_task(_listen(ws, on_message))
    dropped = asyncio.create_task(viewer.dropped.wait())
    answers = asyncio.create_task(_answer(ws, outbox))
    try:
        done, _ = await asyncio.wait({pump, listen, dropped, answers}, return_when=asyncio.FIRST_COMPLETED)
        ended = pump in done and pump.exception() is None
        if ended:
            waits = {listen} if stay else {listen, asyncio.ensure_future(_settled(outbox))}
            finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            ended = listen not in finished
    finally:
        for task in (pump, listen, dropped, answers):
            task.cancel()
    if dropped in done or (pump in done and isinstance(pump.exception(), ViewerDropped)):
        await _close(ws, CLOSE_TOO_SLOW, viewer.too_slow_reason)
    elif ended:
        await _close(ws, 1000, "session ended")


async def _settled(outbox: Outbox) -> None:
    """Returns once every analysis this socket asked for has answered and been sent."""
    while True:
        await outbox.idle.wait()
        await asyncio.sleep(0)  # let a just-queued answer be sent first
        if outbox.idle.is_set() and outbox.queue.empty():
            return


async def _answer(ws: WebSocket, outbox: Outbox) -> None:
    while True:
        frame, final, job = await outbox.queue.get()
        await ws.send_bytes(frame)
        if final:
            outbox.answered(job)


async def _pump(ws: WebSocket, viewer: Viewer) -> None:
    async for frame in viewer.frames():
        await ws.send_bytes(frame)


async def _listen(ws: WebSocket, on_message: OnMessage) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            await on_message(message_data(message))
        except MedvizError as error:
            await ws.send_bytes(frames.encode_error(error.code, error.message))


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code, close_reason(reason)), 5.0)
