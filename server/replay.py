"""Replay a recording over a websocket at 0.25x-8x of its recorded timing, with controls.

Owns: `ReplayClock` (sans-I/O: given the steps' recorded `t_ms`, the speed and pause /
resume / seek / speed commands, which step is next and how long until it is due) and the
`/ws/replay/{id}` route, which sends a `replay` status frame, the recorded `start` bytes,
each step's recorded bytes when due and the recorded `end`, all unchanged, so the browser
decodes live and replayed sessions alike; the recorded analysis results of token k follow
step k. A status frame follows every command. `analyze` / `cancel_analysis` work as on
live sockets, on the recording (results are appended to it). After the last frame the
socket stays open for seeks and analyses until the client closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Callable

from starlette.websockets import WebSocket

from medviz_core import frames
from medviz_core.errors import MedvizError, RequestError
from medviz_core.frames import (
    AnalysisFrame, AnalyzeRequest, CancelAnalysisRequest, PauseRequest, ResumeRequest, SeekRequest, SpeedRequest,
    StepFrame,
)
from medviz_core.recording import Recording, read_recording, recording_path

from .analysis_run import recording_source
from .live import message_data, refuse
from .requests import ANALYSIS_COMMANDS, parse_client_frame
from .sessions import SessionManager
from .settings import Settings

MIN_SPEED, MAX_SPEED = 0.25, 8.0


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
    await ws.accept()
    try:
        speed = parse_speed(ws.query_params.get("speed"))
        path = recording_path(settings.recordings, ws.path_params["recording_id"])
        recording = await asyncio.to_thread(read_recording, path)
        if recording.start is None:
            raise RequestError(f"recording {path.stem!r} is empty")
    except MedvizError as error:
        await refuse(ws, error.code, error.message)
        return
    await Replay(ws, settings, recording, Path(path).stem, speed, ws.app.state.sessions, path).run()


class Replay:
    """One replay connection: a command reader and a sender driven by a ReplayClock."""

    def __init__(self, ws: WebSocket, settings: Settings, recording: Recording, name: str, speed: float,
                 sessions: SessionManager, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.ws, self.settings, self.name, self.now, self.sessions = ws, settings, name, clock, sessions
        self.start = recording.frames[0].data
        self.steps = [f.data for f in recording.steps]
        self.end = recording.end_frame.data if recording.end_frame is not None else None
        self.analyses: dict[int, list[bytes]] = {}  # step index -> its recorded results
        for f in recording.analyses:
            if isinstance(f.frame, AnalysisFrame):
                self.analyses.setdefault(f.frame.index, []).append(f.data)
        t_ms = [f.frame.t_ms for f in recording.steps if isinstance(f.frame, StepFrame)]
        self.clock = ReplayClock(t_ms, speed, clock())
        self.commands: asyncio.Queue[frames.ClientFrame | bytes | None] = asyncio.Queue()  # bytes: an answer
        self.asked: set[str] = set()  # jobs this connection asked for
        self.reply = self._reply()  # one reply for all its jobs, so withdraw finds it
        self.source = recording_source(name, path, recording)

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            await self._status()
            await self.ws.send_bytes(self.start)
            await self._play()
        except Exception:  # the client went away mid-send
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            for job in self.asked:  # a job nobody else waits for stops
                self.sessions.analyses.withdraw(self.source.key, job, self.reply)

    async def _play(self) -> None:
        ended = False
        while True:
            delay = self.clock.delay(self.now())
            if delay is None and not ended and self.clock.at >= len(self.steps):
                if self.end is not None:
                    await self.ws.send_bytes(self.end)
                ended = True
                continue
            try:
                command = await asyncio.wait_for(self.commands.get(), delay)
            except asyncio.TimeoutError:
                await self.ws.send_bytes(self.steps[self.clock.at])
                for result in self.analyses.get(self.clock.at, ()):
                    await self.ws.send_bytes(result)
                self.clock.advance()
                continue
            if command is None:
                return
            if isinstance(command, bytes):
                await self.ws.send_bytes(command)
                continue
            keep_end = self._apply(command)
            ended = ended and keep_end
            await self._status()

    def _apply(self, command: frames.ClientFrame) -> bool:
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
        await self.ws.send_bytes(frames.encode_replay(self.name, len(self.steps), c.speed, c.paused, c.at))

    async def _read(self) -> None:
        accept = ("pause", "resume", "seek", "speed", *ANALYSIS_COMMANDS)
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                await self.commands.put(None)
                return
            try:
                command = parse_client_frame(message_data(message), self.settings.limits, accept=accept)
                if isinstance(command, AnalyzeRequest):
                    self.asked.add(self.sessions.analyses.request(self.source, command, self.reply))
                elif isinstance(command, CancelAnalysisRequest):
                    self.sessions.analyses.cancel(self.source.key, command.job)
                else:
                    await self.commands.put(command)
            except MedvizError as error:
                await self.ws.send_bytes(frames.encode_error(error.code, error.message))

    def _reply(self) -> Callable[[bytes, bool], None]:
        loop = asyncio.get_running_loop()

        def reply(frame: bytes, final: bool) -> None:
            loop.call_soon_threadsafe(self.commands.put_nowait, frame)

        return reply
