"""POST /api/recordings/{id}/video and GET /api/videos/{job} on a real uvicorn: the server renders in the
background and serves the very bytes `medviz video` writes with the same options; the render is stopped while
a live session runs and goes on when it ends; refusals are one line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from server.cli.main import main
from server.settings import Settings
from server.teaching.videos import PAUSED
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
