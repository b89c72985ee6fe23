"""POST /api/recordings/{id}/video and GET /api/videos/{job} on a real uvicorn: the server renders in the
background and serves the very bytes `medviz video` writes with the same options; refusals are one line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.cli.main import main
from tests.server.helpers import LiveServer

OPTIONS = {"size": "320x240", "fps": "4", "method": "rollout"}


@pytest.fixture(scope="module")
def clip(live: LiveServer, cxr_dir: Path) -> Path:
    out = live.settings.recordings / "clip.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(out), "--model", "tiny",
                 "--max-new-tokens", "4"]) == 0
    return out


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
