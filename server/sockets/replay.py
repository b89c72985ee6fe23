"""Replay a recording over a websocket at 0.25x-8x of its recorded timing, with controls.

Owns: `ReplayClock` (sans-I/O: given the steps' recorded `t_ms`, the speed and pause /
resume / seek / speed commands, which step is next and how long until it is due) and the
`/ws/replay/{id}` route, which sends a `replay` status frame, the recorded `start` bytes,
each step's recorded bytes when due and the recorded `end`, all unchanged, so the browser
decodes live and replayed sessions alike; the recorded analysis results of token k follow
step k (but the recorded DICOM exports of a recording that holds its patient's identity: a
replay viewer never gets identity, and its own exports are made from de-identified headers,
compute.replay_source). The recording is indexed once (medviz_core.recording.file.index_recording) and each
frame is read from the open file as it is sent, so a socket holds the index, not the
recording. A status frame follows every command. `analyze` / `cancel_analysis` work as on
live sockets, through the same `Outbox` and sockets/owed_answers.py's rule, on the recording (results
are appended to it; the recording's frames are read for analysis only when the first request
comes); refusals go out in request order.
A recording damaged before its last frame (a bad byte in the middle) replays up to the damage,
then a `bad_frame` error frame says where it stops (the socket stays open; the damage is logged).
After the last frame the socket stays open for seeks and analyses until the client closes
it or it sits idle for idle_timeout_s (4408).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from starlette.websockets import WebSocket

from medviz_core.analyses.compute import AnalysisSource, replay_source
from medviz_core.errors import MedvizError, RequestError
from medviz_core.recording.deidentify import identifying_results
from medviz_core.recording.file import IndexEntry, index_recording, read_at, read_recording, recording_path, tail
from medviz_core.types import source_key
from medviz_core.wire.client_frames import (
    ANALYSIS_COMMANDS,
    AnalyzeRequest,
    CancelAnalysisRequest,
    ClientFrame,
    PauseRequest,
    ResumeRequest,
    SeekRequest,
    SpeedRequest,
    parse_client_frame,
    peek_request_id,
)
from medviz_core.wire.codes import CloseCode, ErrorCode
from medviz_core.wire.server_frames import ErrorFrame, ReplayFrame
from server.sessions import SessionManager
from server.settings import Settings
from server.sockets.connections import Connections, Idle
from server.sockets.live import Outbox, close_socket, message_data, refuse
from server.sockets.owed_answers import Answer

log = logging.getLogger("medviz.server")

MIN_SPEED, MAX_SPEED = 0.25, 8.0
READ_ON_LOOP = 64 * 1024  # frames up to this size are read on the loop; larger ones (a start's PNG) on a thread


class ReplayClock:
    """Recorded time runs at `speed` x wall time while playing; the next step is due when
    the recorded-time cursor reaches its `t_ms`."""

    def __init__(self, t_ms: list[float], speed: float, now: float) -> None:
        self.t_ms = t_ms
        self.speed = speed
        self.paused = False
        self.at = 0  # next step index to send
        self._base = now  # wall time at which the cursor was `_cursor`
        self._cursor = 0.0  # recorded ms

    def cursor(self, now: float) -> float:
        return self._cursor if self.paused else self._cursor + (now - self._base) * 1000.0 * self.speed

    def delay(self, now: float) -> float | None:
        """Seconds until the next step is due (0: now); None when paused or past the last step."""
        if self.paused or self.at >= len(self.t_ms):
            return None
        return max(0.0, (self.t_ms[self.at] - self.cursor(now)) / 1000.0 / self.speed)

    def advance(self) -> None:
        self.at += 1

    def pause(self, now: float) -> None:
        self._cursor, self._base, self.paused = self.cursor(now), now, True

    def resume(self, now: float) -> None:
        self._base, self.paused = now, False

    def seek(self, index: int, now: float) -> None:
        if index > len(self.t_ms):
            raise RequestError(f"seek index must be in 0..{len(self.t_ms)}; got {index}")
        self.at = index
        self._cursor = self.t_ms[index] if index < len(self.t_ms) else self.cursor(now)
        self._base = now

    def set_speed(self, value: float, now: float) -> None:
        self._cursor, self._base, self.speed = self.cursor(now), now, value


def parse_speed(text: str | None) -> float:
    if text is None:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"speed must be a number in {MIN_SPEED:g}..{MAX_SPEED:g}; got {text[:20]!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise RequestError(f"speed must be in {MIN_SPEED:g}..{MAX_SPEED:g}; got {value:g}")
    return value


async def replay_route(ws: WebSocket) -> None:
    settings: Settings = ws.app.state.settings
    connections: Connections = ws.app.state.connections
    await ws.accept()
    try:
        with connections.hold("replay"):
            speed = parse_speed(ws.query_params.get("speed"))
            path = recording_path(settings.recordings, ws.path_params["recording_id"])
            index = await asyncio.to_thread(index_recording, path)
            if not index:
                raise RequestError(f"recording {path.stem!r} is empty")
            damage = await asyncio.to_thread(damage_note, path, index)
            hidden = await asyncio.to_thread(identifying_results, path, index)
            with await asyncio.to_thread(path.open, "rb") as file:  # an open file survives a DELETE
                replay = Replay(ws, settings, tuple(e for e in index if e.offset not in hidden), file, path, speed,
                                ws.app.state.sessions)
                replay.damage = damage
                await replay.run()
    except MedvizError as error:
        await refuse(ws, error.code, error.message)


def damage_note(path: Path, index: tuple[IndexEntry, ...]) -> bytes | None:
    """The error frame a replay sends where a damaged recording stops (its readable frames end before its last
    whole bytes: a bad byte in the middle, logged), or None (whole, or only a torn last frame: a cut recording)."""
    last = index[-1]
    readable = last.offset + last.size
    ending = tail(path)
    if readable >= ending.size or (readable == ending.whole and not ending.damaged):
        return None
    steps = sum(entry.type == "step" for entry in index)
    log.warning("recording %s is damaged at byte %d of %d: its replay stops after %d step(s)", path.stem, readable,
                ending.size, steps)
    return ErrorFrame(ErrorCode.BAD_FRAME, f"recording {path.stem!r} is damaged at byte {readable} of {ending.size}: "
                      f"the replay stops after step {steps} of what was recorded").to_wire()


class Replay:
    """One replay connection: a command reader and a sender driven by a ReplayClock."""

    def __init__(self, ws: WebSocket, settings: Settings, index: tuple[IndexEntry, ...], file: BinaryIO,
                 path: Path, speed: float, sessions: SessionManager,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ws, self.settings, self.file, self.path = ws, settings, file, path
        self.now, self.sessions = clock, sessions
        self.name = path.stem
        self.start = index[0]
        self.steps = [e for e in index if e.type == "step"]
        ends = [e for e in index if e.type == "end"]
        self.end = ends[-1] if ends else None
        self.analyses: dict[int, list[IndexEntry]] = {}  # step index -> its recorded results
        for e in index:
            if e.type == "analysis" and e.done:
                self.analyses.setdefault(e.index, []).append(e)
        self.clock = ReplayClock([e.t_ms for e in self.steps], speed, clock())
        self.commands: asyncio.Queue[ClientFrame | Answer | None] = asyncio.Queue()  # Answer: to send now
        # the analysis answers it owes (sockets/live.py's Outbox, as live sockets): sent from the commands, in order
        self.outbox = Outbox(asyncio.get_running_loop(), put=self.commands.put_nowait, asker="replay")
        self.idle = Idle(settings.idle_timeout_s)
        self._source: AnalysisSource | None = None
        self.damage: bytes | None = None  # an error frame sent where a damaged recording's frames stop

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        expired = asyncio.create_task(self.idle.expired(lambda: bool(self.outbox.pending)))
        play = asyncio.create_task(self._play_all())
        try:
            done, _ = await asyncio.wait({play, expired}, return_when=asyncio.FIRST_COMPLETED)
            if expired in done:
                await close_socket(self.ws, CloseCode.IDLE, f"no message either way for {self.idle.timeout_s:g} s",
                                     self.settings.close_timeout_s)
            elif play.exception() is not None:  # the client went away mid-send
                log.info("replay %s ended: %s", self.name, type(play.exception()).__name__)
        finally:
            for task in (reader, expired, play):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.outbox.withdraw(self.sessions.analyses)  # a job nobody else waits for stops

    @property
    def _key(self) -> str:
        return source_key("recording", self.name)

    async def _play_all(self) -> None:
        await self._status()
        await self._send(self.start)
        await self._play()

    async def _send(self, entry: IndexEntry) -> None:
        data = (read_at(self.file, entry) if entry.size <= READ_ON_LOOP
                else await asyncio.to_thread(read_at, self.file, entry))
        await self._send_bytes(data)

    async def _send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)
        self.idle.touch()

    async def _play(self) -> None:
        ended = False
        while True:
            delay = self.clock.delay(self.now())
            if delay is None and not ended and self.clock.at >= len(self.steps):
                if self.end is not None:
                    await self._send(self.end)
                if self.damage is not None:
                    await self._send_bytes(self.damage)
                ended = True
                continue
            try:
                command = await asyncio.wait_for(self.commands.get(), delay)
            except asyncio.TimeoutError:
                await self._send(self.steps[self.clock.at])
                for result in self.analyses.get(self.clock.at, ()):
                    await self._send(result)
                self.clock.advance()
                continue
            if command is None:
                return
            if isinstance(command, Answer):
                await self._send_bytes(command.data)
                self.outbox.sent(command)
                continue
            keep_end = self._apply(command)
            ended = ended and keep_end
            await self._status()

    def _apply(self, command: ClientFrame) -> bool:
        """Apply a command; returns whether the end frame stays sent (False after a seek)."""
        now = self.now()
        if isinstance(command, PauseRequest):
            self.clock.pause(now)
        elif isinstance(command, ResumeRequest):
            self.clock.resume(now)
        elif isinstance(command, SpeedRequest):
            self.clock.set_speed(command.value, now)
        elif isinstance(command, SeekRequest):
            self.clock.seek(min(command.index, len(self.steps)), now)
            return False
        return True

    async def _status(self) -> None:
        c = self.clock
        await self._send_bytes(ReplayFrame(self.name, len(self.steps), c.speed, c.paused, c.at).to_wire())

    async def _read(self) -> None:
        accept = ("pause", "resume", "seek", "speed", *ANALYSIS_COMMANDS)
        while True:
            message = await self.ws.receive()
            self.idle.touch()
            if message["type"] == "websocket.disconnect":
                await self.commands.put(None)
                return
            data = message_data(message)
            try:
                command = parse_client_frame(data, self.settings.limits, accept=accept)
                if isinstance(command, AnalyzeRequest):
                    self.outbox.request(self.sessions.analyses, await self._analysis_source(), command)
                elif isinstance(command, CancelAnalysisRequest):
                    self.outbox.cancel(self.sessions.analyses, self._key, command.job)
                else:
                    await self.commands.put(command)
            except MedvizError as error:  # after the answers already on their way
                self.outbox.refuse(error, peek_request_id(data))

    async def _analysis_source(self) -> AnalysisSource:
        """The recording's frames for analysis, read (on a thread) when the first request comes."""
        if self._source is None:
            recording = await asyncio.to_thread(read_recording, self.path)
            self._source = replay_source(self.name, self.path, recording)
        return self._source
