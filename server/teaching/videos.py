"""The recording player's Video button on the server: a render in the background, then its file.

Owns: `VideoJobs` (this process's renders: at most RENDERS_AT_ONCE at once and WAITING_AT_MOST waiting, 503
beyond; a render killed past `video_render_limit_s` rendering or `video_paused_limit_s` paused without a break,
its job failed with a line saying so; each file in the process's own temporary folder, removed KEPT_S after it
was made (a sweep every SWEEP_S, and at each new job), the oldest past KEPT_JOBS; `close`, the app's shutdown,
kills the renders and removes the folder, and a folder a killed server left is removed by the next start) and
the routes `POST /api/recordings/{id}/video` (checks the recording and the options, answers `{"job": ...}` with
202) and `GET /api/videos/{job}` (202 with the job's state while it waits or renders, then the file; a failed
render: its one line, 400, 413 or 503 past a limit, or 500); both answer 403 to a foreign Origin.

A render is `medviz video` itself (server/cli/video.py) run as a child process at the lowest CPU priority
(nice NICENESS), and it waits for the model like an analysis does: while any session of this server is
queued or running, the child is stopped (SIGSTOP; its ffmpeg, which only it feeds, waits for input) and it goes
on (SIGCONT) when the model is idle; an analysis running on the model or waiting for it counts as busy too. The
child and its ffmpeg die with the server however it ends (`dies_with_parent`: SIGKILL, which ends a stopped
process too, when their parent goes); only the child is ever stopped, never a process of its own in the moment
between its fork and its exec, when that death signal is not yet set. A limit or the shutdown kills the child's
whole process group (it leads one). So a teacher's video never slows a live session: it runs outside the
model's worker thread (as an analysis there it would hold up the live session for the whole render),
outside this process (a thread here would share the interpreter lock with the worker while Pillow draws),
and not while the model works (at nice 19 alone, a render beside a session left it 0.59 of its tokens/s on
two cores, stopped 0.97: benchmarks/results/2026-12-07-cpu-video-while-live.txt). Being the same command,
it gives the same bytes as the CLI with the same options. The recording id and the job id are checked
before any path is built. Does not own the video (medviz_core/export/video.py) nor the guard in front
(guard/security.py: as for every route).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from medviz_core.errors import BusyError, MedvizError, MessageTooLarge, NotFoundError, RequestError
from medviz_core.export.video import DEFAULT_SIZE, FORMATS, VideoOptions, dies_with_parent, parse_size, plan_video
from medviz_core.recording.file import recording_path
from server.guard.security import same_origin_only
from server.recordings import STATUS, error_response
from server.sessions import LocalSessions, SessionManager
from server.settings import Settings

log = logging.getLogger("medviz.videos")

RENDERS_AT_ONCE = 1
WAITING_AT_MOST = 4
KEPT_S = 900.0  # a made video can be downloaded again for this long
KEPT_JOBS = 32
SWEEP_S = 60.0  # how often expired videos are removed
FOLDER_PREFIX = "medviz-videos-"  # then this process's id and a dash: a folder whose process is gone is removed
NICENESS = 19  # the lowest: a render gets the CPU the live model leaves (benchmarks/video_while_live.py)
PACE_S = 0.1  # how often a render looks whether the model is busy
PAUSED = "paused while the model runs a live session"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{16}")
MEDIA_TYPES = {".mp4": "video/mp4", ".gif": "image/gif", ".webp": "image/webp"}


@dataclass
class VideoJob:
    id: str
    recording: str
    options: VideoOptions
    format: str
    status: str = "queued"  # queued | rendering | done | failed
    message: str = ""
    code: str = ""
    file: Path | None = None
    finished: float = 0.0
    pid: int = 0  # the render's process (and process group), once it started
    stopped: str = ""  # why a limit killed the render
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, object]:
        return {"job": self.id, "status": self.status, "recording": self.recording, "method": self.options.method,
                "format": self.format.lstrip("."), "message": self.message}

    @property
    def download_name(self) -> str:
        return f"medviz-{self.recording}-{self.options.method}{self.format}"


@dataclass(frozen=True)
class RenderLimits:
    """How long one render may take: `rendering_s` from its start, pauses included, and `paused_s` paused without a
    break (a session that never ends would keep the only slot forever)."""

    rendering_s: float = 1800.0
    paused_s: float = 600.0

    def exceeded(self, rendering_s: float, paused_s: float) -> MedvizError | None:
        """Why a render that has run this long, paused this long now, must stop; None while it may go on."""
        if paused_s > self.paused_s:
            return BusyError(f"stopped: the model was busy for {self.paused_s:g} s without a break "
                             "(video_paused_limit_s); ask again when it is idle")
        if rendering_s > self.rendering_s:
            return MessageTooLarge(f"stopped after {self.rendering_s:g} s, the server's limit on a render "
                                   "(video_render_limit_s); choose a smaller size, a higher speed or fewer tokens")
        return None


class VideoJobs:
    """The renders of one server process (the event loop's thread only)."""

    def __init__(self, limits: RenderLimits | None = None) -> None:
        self.jobs: dict[str, VideoJob] = {}
        self.limits = limits or RenderLimits()
        self._slots: asyncio.Semaphore | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def folder(self) -> Path:
        """This process's own temporary folder (0700), made at the first render, removed by `close` (or when the
        process ends); folders of this user's servers that are gone are removed first."""
        if self._folder is None:
            remove_orphaned_folders(Path(tempfile.gettempdir()))
            self._folder = tempfile.TemporaryDirectory(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
        return Path(self._folder.name)

    async def sweep_every(self, seconds: float = SWEEP_S) -> None:
        """`sweep` every `seconds`, so an expired video goes within that time of KEPT_S (the app's lifespan runs it)."""
        while True:
            await asyncio.sleep(seconds)
            self.sweep()

    async def close(self) -> None:
        """Kill every render (with its ffmpeg) and forget every job, then remove the folder: the app's shutdown."""
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.jobs.clear()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def start(self, recording: Path, options: VideoOptions, suffix: str, busy: Callable[[], bool]) -> VideoJob:
        """A new job rendering `recording` (checked already), paused whenever `busy()`; BusyError when
        WAITING_AT_MOST wait already."""
        self.sweep()
        waiting = sum(job.status == "queued" for job in self.jobs.values())
        if waiting >= WAITING_AT_MOST:
            raise BusyError(f"{waiting} videos are waiting to be made; try again when one is done")
        job = VideoJob(secrets.token_urlsafe(12), recording.stem, options, suffix)
        self.jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._render(job, recording, busy))
        return job

    def find(self, job_id: str) -> VideoJob:
        if not JOB_ID.fullmatch(job_id) or job_id not in self.jobs:
            raise NotFoundError("no such video job (a made video is kept for 15 minutes)")
        return self.jobs[job_id]

    async def _render(self, job: VideoJob, recording: Path, busy: Callable[[], bool]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(RENDERS_AT_ONCE)
        async with self._slots:
            job.status = "rendering"
            out = self.folder / f"{job.id}{job.format}"
            process = await spawn_render(recording, out, job.options)
            job.pid = process.pid
            pacing = asyncio.get_running_loop().create_task(pace(job, process.pid, busy, self.limits))
            try:
                _, said = await process.communicate()
            except asyncio.CancelledError:  # the server stops: so does the render
                signal_group(process.pid, KILL)
                await process.wait()
                raise
            finally:
                pacing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pacing
            job.finished = time.monotonic()
            if process.returncode == 0 and out.is_file() and not job.stopped:
                job.status, job.file = "done", out
                return
            lines = said.decode("utf-8", "replace").strip().splitlines()
            line = lines[-1].removeprefix("medviz: ") if lines else f"exit code {process.returncode}"
            job.status, job.message = "failed", job.stopped or line
            job.code = job.code or (RequestError.code if process.returncode == 2 else "internal")
            for left in self.folder.glob(f"*{job.id}*"):  # a killed render's partial file
                left.unlink(missing_ok=True)
            log.warning("video of recording %s failed: %s", job.recording, job.message)

    def sweep(self) -> None:
        """Forget finished jobs older than KEPT_S, and the oldest finished ones past KEPT_JOBS; their files too."""
        now = time.monotonic()
        finished = sorted((job for job in self.jobs.values() if job.finished), key=lambda job: job.finished)
        for number, job in enumerate(finished):
            if now - job.finished > KEPT_S or len(finished) - number > KEPT_JOBS:
                self.jobs.pop(job.id, None)
                if job.file is not None:
                    job.file.unlink(missing_ok=True)


async def pace(job: VideoJob, pid: int, busy: Callable[[], bool], limits: RenderLimits) -> None:
    """Stop the render while `busy()` (the model runs a session or an analysis), let it go on when not; kill its
    process group past `limits` (`job.stopped` and `job.code` say why); never leave it stopped."""
    started = time.monotonic()
    paused_since: float | None = None
    try:
        while True:
            now = time.monotonic()
            wanted = busy()
            if wanted != (paused_since is not None):
                signal_process(pid, STOP if wanted else CONTINUE)
                paused_since, job.message = (now, PAUSED) if wanted else (None, "")
            past = limits.exceeded(now - started, 0.0 if paused_since is None else now - paused_since)
            if past is not None:
                job.stopped, job.code = past.message, past.code
                signal_group(pid, KILL)
                return
            await asyncio.sleep(PACE_S)
    finally:
        if paused_since is not None:
            signal_process(pid, CONTINUE)
            job.message = "" if job.status == "rendering" else job.message


STOP, CONTINUE, KILL = (getattr(signal, name, None) for name in ("SIGSTOP", "SIGCONT", "SIGKILL"))  # POSIX only


def signal_group(pid: int, number: int | None) -> None:
    """Send a signal to the render and its ffmpeg (the child leads its own process group); gone: nothing."""
    if number is not None and hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, number)


def signal_process(pid: int, number: int | None) -> None:
    """Send a signal to the render alone (its ffmpeg waits for the frames it feeds); gone: nothing."""
    if number is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, number)


def model_busy(sessions: SessionManager) -> bool:
    """Whether any session or analysis of this process's model waits for it or runs on it (a web node of `serve
    --redis` holds no model: its renders never wait, and its session list is not asked ten times a second)."""
    return isinstance(sessions, LocalSessions) and (
        sessions.worker.has_tasks or any(info.state != "finished" for info in sessions.sessions()))


def remove_orphaned_folders(temporary: Path) -> None:
    """Remove this user's video folders whose server process is gone (one killed before it could remove its own)."""
    for folder in temporary.glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and folder.stat().st_uid == os.getuid() and not process_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def spawn_render(recording: Path, out: Path, options: VideoOptions) -> asyncio.subprocess.Process:
    """`render_command` as a child leading its own process group (its ffmpeg in it), its stderr piped, killed when
    this process ends (`dies_with_parent`: a stopped child too)."""
    return await asyncio.create_subprocess_exec(
        *render_command(recording, out, options), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True, preexec_fn=dies_with_parent())


def render_command(recording: Path, out: Path, options: VideoOptions) -> list[str]:
    """`medviz video` with these options, quiet and at NICENESS, by this interpreter."""
    timing = ["--fps", str(options.fps)] if options.fps is not None else ["--speed", repr(options.speed)]
    tokens = ["--token-range", options.tokens] if options.tokens is not None else []
    return [sys.executable, "-m", "server.cli.main", "video", str(recording), "--out", str(out), "--method",
            options.method, "--size", f"{options.size[0]}x{options.size[1]}", *timing, *tokens, "--quiet", "--nice",
            str(NICENESS)]


def options_of(request: Request) -> tuple[VideoOptions, str]:
    """The options of a request's query (method, format, size, speed or fps, tokens); RequestError if bad."""
    query = request.query_params
    suffix = f".{query.get('format', 'mp4').lower()}"
    if suffix not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(s.lstrip('.') for s in FORMATS)}; got "
                           f"{query.get('format')!r}")
    try:
        speed = float(query.get("speed", "1"))
        fps = int(query["fps"]) if "fps" in query else None
    except ValueError:
        raise RequestError("speed must be a number and fps a whole number") from None
    size = parse_size(query.get("size", f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}"))
    return VideoOptions(method=query.get("method", "consensus"), size=size, speed=speed, fps=fps,
                        tokens=query.get("tokens")).check(), suffix


@same_origin_only
async def start_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    jobs: VideoJobs = request.app.state.videos
    try:
        path = recording_path(settings.recordings, request.path_params["recording_id"])
        if not path.is_file():
            raise NotFoundError(f"recording {path.stem!r} does not exist")
        options, suffix = options_of(request)
        # the recording's own refusals (no tokens, a method it lacks) answer now, not from the job
        await asyncio.to_thread(plan_video, path, jobs.folder / f"check{suffix}", options)
        sessions: SessionManager = request.app.state.sessions
        job = jobs.start(path, options, suffix, lambda: model_busy(sessions))
    except MedvizError as error:
        return error_response(error)
    return JSONResponse(job.to_json(), status_code=202)


@same_origin_only
async def video_route(request: Request) -> Response:
    jobs: VideoJobs = request.app.state.videos
    try:
        job = jobs.find(request.path_params["job"])
    except MedvizError as error:
        return error_response(error)
    if job.status == "done" and job.file is not None and job.file.is_file():
        return FileResponse(job.file, media_type=MEDIA_TYPES[job.format], filename=job.download_name)
    if job.status == "failed":
        return JSONResponse({"error": {"code": job.code, "message": job.message}, **job.to_json()},
                            status_code=STATUS.get(job.code, 500))
    return JSONResponse(job.to_json(), status_code=202)
