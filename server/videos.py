"""The recording player's Video button on the server: a render in the background, then its file.

Owns: `VideoJobs` (this process's renders: at most RENDERS_AT_ONCE at once and WAITING_AT_MOST waiting, 503
beyond; each file in the process's own temporary folder, removed KEPT_S after it was made, the oldest past
KEPT_JOBS, and the folder with the process) and the routes `POST /api/recordings/{id}/video` (checks the
recording and the options, answers `{"job": ...}` with 202) and `GET /api/videos/{job}` (202 with the job's
state while it waits or renders, then the file; a failed render: its one line, 400 or 500).

A render is `medviz video` itself (server/cli/video.py) run as a child process at lower CPU priority (nice
NICENESS), so a teacher's video never slows the live model: it runs outside the model's worker thread (as
an analysis there it would hold up the live session for the whole render) and outside this process (a
thread here would share the interpreter lock with the worker while Pillow draws), and the operating system
gives the model the CPU first. Being the same command, it gives the same bytes as the CLI with the same
options. The recording id and the job id are checked before any path is built. Does not own the video
(medviz_core/export/video.py) nor the guard in front (guard/security.py: as for every route).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from medviz_core.errors import BusyError, MedvizError, NotFoundError, RequestError
from medviz_core.export.video import DEFAULT_SIZE, FORMATS, VideoOptions, parse_size, plan_video
from medviz_core.recording.file import recording_path
from server.recordings import error_response
from server.settings import Settings

log = logging.getLogger("medviz.videos")

RENDERS_AT_ONCE = 1
WAITING_AT_MOST = 4
KEPT_S = 900.0  # a made video can be downloaded again for this long
KEPT_JOBS = 32
NICENESS = 10
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
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, object]:
        return {"job": self.id, "status": self.status, "recording": self.recording, "method": self.options.method,
                "format": self.format.lstrip("."), "message": self.message}

    @property
    def download_name(self) -> str:
        return f"medviz-{self.recording}-{self.options.method}{self.format}"


class VideoJobs:
    """The renders of one server process (the event loop's thread only)."""

    def __init__(self) -> None:
        self.jobs: dict[str, VideoJob] = {}
        self._slots: asyncio.Semaphore | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def folder(self) -> Path:
        """This process's own temporary folder (0700), made at the first render, removed when the process ends."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="medviz-videos-")
        return Path(self._folder.name)

    def start(self, recording: Path, options: VideoOptions, suffix: str) -> VideoJob:
        """A new job rendering `recording` (checked already); BusyError when WAITING_AT_MOST wait already."""
        self.sweep()
        waiting = sum(job.status == "queued" for job in self.jobs.values())
        if waiting >= WAITING_AT_MOST:
            raise BusyError(f"{waiting} videos are waiting to be made; try again when one is done")
        job = VideoJob(secrets.token_urlsafe(12), recording.stem, options, suffix)
        self.jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._render(job, recording))
        return job

    def find(self, job_id: str) -> VideoJob:
        if not JOB_ID.fullmatch(job_id) or job_id not in self.jobs:
            raise NotFoundError("no such video job (a made video is kept for 15 minutes)")
        return self.jobs[job_id]

    async def _render(self, job: VideoJob, recording: Path) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(RENDERS_AT_ONCE)
        async with self._slots:
            job.status = "rendering"
            out = self.folder / f"{job.id}{job.format}"
            process = await asyncio.create_subprocess_exec(
                *render_command(recording, out, job.options), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                _, said = await process.communicate()
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                raise
            job.finished = time.monotonic()
            if process.returncode == 0 and out.is_file():
                job.status, job.file = "done", out
                return
            lines = said.decode("utf-8", "replace").strip().splitlines()
            line = lines[-1].removeprefix("medviz: ") if lines else f"exit code {process.returncode}"
            job.status, job.message = "failed", line
            job.code = RequestError.code if process.returncode == 2 else "internal"
            log.warning("video of recording %s failed: %s", job.recording, line)

    def sweep(self) -> None:
        """Forget finished jobs older than KEPT_S, and the oldest finished ones past KEPT_JOBS; their files too."""
        now = time.monotonic()
        finished = sorted((job for job in self.jobs.values() if job.finished), key=lambda job: job.finished)
        for number, job in enumerate(finished):
            if now - job.finished > KEPT_S or len(finished) - number > KEPT_JOBS:
                self.jobs.pop(job.id, None)
                if job.file is not None:
                    job.file.unlink(missing_ok=True)


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
        job = jobs.start(path, options, suffix)
    except MedvizError as error:
        return error_response(error)
    return JSONResponse(job.to_json(), status_code=202)


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
                            status_code=400 if job.code == RequestError.code else 500)
    return JSONResponse(job.to_json(), status_code=202)
