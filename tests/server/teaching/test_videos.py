"""POST /api/recordings/{id}/video and GET /api/videos/{job} on a real uvicorn: the server renders in the
background and serves the very bytes `medviz video` writes with the same options; the render is stopped while
a live session (or an analysis) runs and goes on when it ends; refusals are one line. A render dies with the
server (a stopped one and its ffmpeg too), past its time limits, and at the app's shutdown, which removes its
folder; expired videos are swept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from medviz_core.export.video import VideoOptions
from server.cli.main import main
from server.sessions import LocalSessions
from server.settings import Settings
from server.teaching.videos import (
    KEPT_S,
    PAUSED,
    RenderLimits,
    VideoJob,
    VideoJobs,
    model_busy,
    remove_orphaned_folders,
)
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import LiveServer, receive_all, recv, run, serve, start_bytes, until

OPTIONS = {"size": "320x240", "fps": "4", "method": "rollout"}


def record_clip(folder: Path, cxr_dir: Path) -> Path:
    out = folder / "clip.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(out), "--model", "tiny",
                 "--max-new-tokens", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def clip(live: LiveServer, cxr_dir: Path) -> Path:
    return record_clip(live.settings.recordings, cxr_dir)


def finished(live: LiveServer, job: str) -> httpx.Response:
    """The job's answer once it is no longer 202 (at most two minutes)."""
    for _ in range(600):
        answer = httpx.get(f"{live.http}/api/videos/{job}")
        if answer.status_code != 202:
            return answer
        assert answer.json()["status"] in ("queued", "rendering")
        time.sleep(0.2)
    raise AssertionError(f"video job {job} did not finish")


def test_the_route_renders_and_serves_the_bytes_the_cli_writes(live: LiveServer, clip: Path, tmp_path: Path) -> None:
    asked = httpx.post(f"{live.http}/api/recordings/clip/video", params=OPTIONS)
    assert asked.status_code == 202
    job = asked.json()["job"]
    assert asked.json() == {"job": job, "status": "queued", "recording": "clip", "method": "rollout",
                            "format": "mp4", "message": ""}
    answer = finished(live, job)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.headers["content-disposition"] == 'attachment; filename="medviz-clip-rollout.mp4"'
    cli = tmp_path / "cli.mp4"
    assert main(["video", str(clip), "--out", str(cli), "--size", "320x240", "--fps", "4", "--method", "rollout",
                 "--quiet"]) == 0
    assert answer.content == cli.read_bytes()
    assert httpx.get(f"{live.http}/api/videos/{job}").content == answer.content  # kept for another download


def test_a_gif_is_served_as_one(live: LiveServer, clip: Path) -> None:
    asked = httpx.post(f"{live.http}/api/recordings/clip/video", params={**OPTIONS, "format": "gif"})
    answer = finished(live, asked.json()["job"])
    assert (answer.status_code, answer.headers["content-type"], answer.content[:6]) == (200, "image/gif", b"GIF89a")


@pytest.mark.parametrize(("path", "params", "status", "message"), [
    ("clip", {"method": "gradient"}, 400,
     "method 'gradient' is not in recording 'clip'; it has raw, layer_weighted, head_importance, flow, rollout, "
     "consensus"),
    ("clip", {"format": "avi"}, 400, "format must be one of mp4, gif, webp; got 'avi'"),
    ("clip", {"size": "3x3"}, 400, "size must have even sides from 160x120 to 3840x2160; got 3x3"),
    ("clip", {"fps": "many"}, 400, "speed must be a number and fps a whole number"),
    ("no_such_clip", {}, 404, "recording 'no_such_clip' does not exist"),
    ("bad.id", {}, 400, "recording id must match [A-Za-z0-9_-]{1,64}; got 'bad.id'"),
])
def test_a_video_asked_badly_is_refused_with_one_line_and_no_job(live: LiveServer, clip: Path, path: str,
                                                                  params: dict[str, Any], status: int,
                                                                  message: str) -> None:
    before = set(live.app.state.videos.jobs)
    answer = httpx.post(f"{live.http}/api/recordings/{path}/video", params=params)
    assert (answer.status_code, answer.json()["error"]["message"]) == (status, message)
    assert set(live.app.state.videos.jobs) == before


def test_an_unknown_job_is_not_found(live: LiveServer) -> None:
    for job in ("AAAAAAAAAAAAAAAA", "a.b", "x" * 80):
        answer = httpx.get(f"{live.http}/api/videos/{job}")
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")


def process_state(pid: int) -> str:
    """A process's state letter from /proc: "T" stopped, "S" sleeping, "R" running."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc")
def test_a_render_is_stopped_while_a_live_session_runs_and_goes_on_after(tiny_engine: Any, tmp_path: Path,
                                                                          cxr_dir: Path, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine)  # its session waits before its first token until the gate opens
    settings = Settings(model="tiny", recordings=tmp_path / "recordings")
    clip = record_clip(settings.recordings, cxr_dir)
    with serve(settings, engine) as server:
        jobs = server.app.state.videos

        async def scenario() -> tuple[str, list[bytes]]:
            async with connect(f"{server.ws}/ws/session", max_size=None) as owner:
                await owner.send(start_bytes(sample_bytes, max_new_tokens=3, question=GATED))
                await recv(owner)  # start: the session runs on the model, held at the gate
                async with httpx.AsyncClient() as client:
                    asked = await client.post(f"{server.http}/api/recordings/clip/video", params=OPTIONS)
                job = jobs.jobs[asked.json()["job"]]
                await until(lambda: job.message == PAUSED, "the render is paused")
                await until(lambda: process_state(job.pid) == "T", "the render's process is stopped")
                assert job.status == "rendering"
                engine.gate.set()
                rest = await receive_all(owner)
                await until(lambda: job.status == "done", "the render is done once the session ended")
                return job.id, rest

        job, rest = run(scenario())
        assert rest  # the session went on to its end while the render waited
        answer = httpx.get(f"{server.http}/api/videos/{job}")
        cli = tmp_path / "cli.mp4"
        assert main(["video", str(clip), "--out", str(cli), "--size", "320x240", "--fps", "4", "--method",
                     "rollout", "--quiet"]) == 0
        assert (answer.status_code, answer.content) == (200, cli.read_bytes())


def dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped (it runs no more)."""
    try:
        return process_state(pid) in ("Z", "X")
    except FileNotFoundError:
        return True


STOPPED_RENDER = """
import asyncio, os, signal, sys
from pathlib import Path
from medviz_core.export.video import VideoOptions
from server.teaching.videos import spawn_render

def encoder(pid):
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"rawvideo" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            pass
    return None

async def main():
    render = await spawn_render(Path(sys.argv[1]), Path(sys.argv[2]), VideoOptions(size=(3840, 2160), fps=1))
    while encoder(render.pid) is None:  # its ffmpeg, started before the first frame is drawn
        await asyncio.sleep(0.001)
    os.kill(render.pid, signal.SIGSTOP)  # stopped, as a render is while the model works
    print(render.pid, encoder(render.pid), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_stopped_render_and_its_ffmpeg_die_with_the_server_that_started_it(live: LiveServer, clip: Path,
                                                                             tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", STOPPED_RENDER, str(clip), str(tmp_path / "out.mp4")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        render, ffmpeg = (int(pid) for pid in server.stdout.readline().split())
        run(until(lambda: process_state(render) == "T", "the render is stopped"))  # its ffmpeg waits for frames
    finally:
        server.kill()  # SIGKILL: no handler, no shutdown (an OOM kill)
        server.wait()
    run(until(lambda: dead(render) and dead(ffmpeg), "the render and its ffmpeg are gone"))


def test_a_render_paused_past_its_limit_is_killed_and_its_job_fails_as_busy(tiny_engine: Any, tmp_path: Path,
                                                                           cxr_dir: Path, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine)
    settings = Settings(model="tiny", recordings=tmp_path / "recordings", video_paused_limit_s=0.5)
    record_clip(settings.recordings, cxr_dir)
    with serve(settings, engine) as server:
        jobs = server.app.state.videos

        async def scenario() -> str:
            async with connect(f"{server.ws}/ws/session", max_size=None) as owner:
                await owner.send(start_bytes(sample_bytes, max_new_tokens=3, question=GATED))
                await recv(owner)  # a session that does not end while the render waits
                async with httpx.AsyncClient() as client:
                    asked = await client.post(f"{server.http}/api/recordings/clip/video", params=OPTIONS)
                job = jobs.jobs[asked.json()["job"]]
                await until(lambda: job.status == "failed", "the paused render is stopped")
                assert dead(job.pid)
                engine.gate.set()
                await receive_all(owner)
                return job.id

        answer = httpx.get(f"{server.http}/api/videos/{run(scenario())}")
        assert (answer.status_code, answer.json()["error"]) == (503, {"code": "busy", "message": (
            "stopped: the model was busy for 0.5 s without a break (video_paused_limit_s); ask again when it is idle")})
        assert list(jobs.folder.iterdir()) == []  # no partial file left


def test_a_render_past_its_time_limit_is_killed_and_its_job_fails_as_too_large(tiny_engine: Any, tmp_path: Path,
                                                                             cxr_dir: Path) -> None:
    settings = Settings(model="tiny", recordings=tmp_path / "recordings", video_render_limit_s=0.2)
    record_clip(settings.recordings, cxr_dir)
    with serve(settings, tiny_engine) as server:
        job = httpx.post(f"{server.http}/api/recordings/clip/video", params={**OPTIONS, "size": "1280x720"}).json()
        answer = finished(server, job["job"])
        assert (answer.status_code, answer.json()["error"]) == (413, {"code": "too_large", "message": (
            "stopped after 0.2 s, the server's limit on a render (video_render_limit_s); choose a smaller size, a "
            "higher speed or fewer tokens")})


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc")
def test_the_apps_shutdown_kills_a_render_and_removes_its_folder(tiny_engine: Any, tmp_path: Path,
                                                                 cxr_dir: Path) -> None:
    settings = Settings(model="tiny", recordings=tmp_path / "recordings")
    record_clip(settings.recordings, cxr_dir)
    with serve(settings, tiny_engine) as server:
        jobs = server.app.state.videos
        job = jobs.jobs[httpx.post(f"{server.http}/api/recordings/clip/video", params=OPTIONS).json()["job"]]
        run(until(lambda: job.pid != 0, "the render started"))
        os.killpg(job.pid, signal.SIGSTOP)  # it cannot finish before the server stops
        folder = jobs.folder
    assert dead(job.pid)
    assert not folder.exists()


def test_an_expired_video_is_swept_without_a_new_request(tmp_path: Path) -> None:
    jobs = VideoJobs()
    made = jobs.folder / "AAAAAAAAAAAAAAAA.mp4"
    made.write_bytes(b"video")
    job = VideoJob("AAAAAAAAAAAAAAAA", "clip", VideoOptions(), ".mp4", status="done", file=made,
                   finished=time.monotonic() - KEPT_S - 1)
    jobs.jobs[job.id] = job

    async def sweeping() -> None:
        sweeper = asyncio.get_running_loop().create_task(jobs.sweep_every(0.01))
        await until(lambda: not made.exists(), "the expired video is removed")
        sweeper.cancel()
        await jobs.close()

    run(sweeping())
    assert jobs.jobs == {}


def test_a_folder_left_by_a_killed_server_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    left = tmp_path / f"medviz-videos-{gone.pid}-abc"
    kept = tmp_path / f"medviz-videos-{os.getpid()}-def"
    for folder in (left, kept):
        folder.mkdir()
        (folder / "x.mp4").write_bytes(b"video")
    remove_orphaned_folders(tmp_path)
    assert (left.exists(), kept.exists()) == (False, True)


def test_the_model_is_busy_while_an_analysis_runs_on_it_or_waits(tiny_engine: Any, tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    sessions = LocalSessions(tiny_engine, Settings(model="tiny", recordings=tmp_path), loop)
    gate, ran = threading.Event(), threading.Event()

    def analysis() -> None:  # holds the model's thread until the gate opens
        ran.set()
        gate.wait(60)

    try:
        assert not model_busy(sessions)
        sessions.worker.run_task("teacher", analysis)
        assert model_busy(sessions)  # waiting or running
        assert ran.wait(60)
        assert model_busy(sessions)  # running
        gate.set()
        run(until(lambda: not model_busy(sessions), "the analysis is done"))
    finally:
        gate.set()
        sessions.close()
        loop.close()


def test_a_render_limit_says_which_limit_stopped_it() -> None:
    limits = RenderLimits(rendering_s=10, paused_s=5)
    assert limits.exceeded(9, 4) is None
    assert limits.exceeded(11, 0).code == "too_large"  # type: ignore[union-attr]
    assert limits.exceeded(6, 6).code == "busy"  # type: ignore[union-attr]
