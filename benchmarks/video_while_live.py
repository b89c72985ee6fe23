"""Does a video render slow a live session? Its tokens/s alone, while the server renders videos, and (for
comparison) while renders run without waiting for the model, or in a thread of the server's own process.

A real uvicorn server (in this process, on a free loopback port) runs the same live session four ways,
round after round so that the machine's state is shared: alone; while the Video button's route renders the
recording again and again (`POST /api/recordings/{id}/video`: `medviz video` in a child process at nice 19,
stopped while a session runs: what server/teaching/videos.py does); the same child never stopped (nice 19 alone);
and while a thread of this process renders it with `make_video` (what a render inside the server's process
would cost: it shares the interpreter lock with the model's worker). The recording is made first by the
same engine (`--video-tokens` tokens). It prints each way's median tokens/s (from the first step to the
end, as the owner receives them), its ratio to the session alone, and the videos finished meanwhile.
Speed lives here, never in tests.

Usage: python benchmarks/video_while_live.py [--model demo] [--tokens 80] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.export.video import VideoOptions, make_video  # noqa: E402
from medviz_core.models.load import load_engine  # noqa: E402
from medviz_core.recording.file import RecordingWriter  # noqa: E402
from medviz_core.session_frames import session_frames  # noqa: E402
from medviz_core.wire import server_frames as frames  # noqa: E402
from medviz_core.wire.client_frames import ParamsRequest, StartRequest  # noqa: E402
from server.background import background_server  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.teaching import videos  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"
CLIP = "bench_clip"
MODEL_BUSY = videos.model_busy


def record_clip(engine: Any, image: bytes, tokens: int, folder: Path) -> Path:
    """The recording the videos show, made by the same engine before the server runs a session."""
    path = folder / f"{CLIP}.medviz"
    request = StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=tokens))
    with RecordingWriter(path) as writer:
        for frame in session_frames(engine, request, CLIP, threading.Event()):
            writer.write(frame.data)
    return path


async def tokens_per_second(port: int, image: bytes, tokens: int) -> float:
    """A live session's tokens/s as its owner receives them: (steps - 1) / (end - first step)."""
    start = StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=tokens))
    async with connect(f"ws://127.0.0.1:{port}/ws/session", max_size=None) as owner:
        await owner.send(start.to_wire())
        first, steps = 0.0, 0
        while True:
            frame = frames.decode(await owner.recv())
            if isinstance(frame, frames.StepFrame):
                steps += 1
                first = first or time.perf_counter()
            elif isinstance(frame, frames.EndFrame):
                return (steps - 1) / (time.perf_counter() - first)


async def route_renders(port: int, token: str, stop: asyncio.Event, done: list[float]) -> None:
    """Ask the server for the clip's video, again as soon as one is made, until `stop`; each one's seconds."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
        while not stop.is_set():
            began = time.perf_counter()
            job = (await client.post(f"/api/recordings/{CLIP}/video")).json()["job"]
            while (await client.get(f"/api/videos/{job}")).status_code == 202:
                await asyncio.sleep(0.05)
            done.append(time.perf_counter() - began)


def thread_renders(clip: Path, out: Path, stop: threading.Event, done: list[float]) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        make_video(clip, out, VideoOptions())
        done.append(time.perf_counter() - began)


async def with_route(port: int, token: str, image: bytes, tokens: int, pause: bool) -> tuple[float, list[float]]:
    # the server runs in this process: whether its renders wait for the model, for this way only
    videos.model_busy = MODEL_BUSY if pause else (lambda sessions: False)
    stop, done = asyncio.Event(), []
    renders = asyncio.create_task(route_renders(port, token, stop, done))
    await asyncio.sleep(2.0)  # the first render under way (its child started and drawing)
    rate = await tokens_per_second(port, image, tokens)
    stop.set()
    await renders
    return rate, done


async def with_thread(port: int, clip: Path, out: Path, image: bytes, tokens: int) -> tuple[float, list[float]]:
    stop, done = threading.Event(), []
    worker = threading.Thread(target=thread_renders, args=(clip, out, stop, done))
    worker.start()
    await asyncio.sleep(1.0)
    rate = await tokens_per_second(port, image, tokens)
    stop.set()
    await asyncio.to_thread(worker.join)
    return rate, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help="tiny | demo (default) | ...")
    parser.add_argument("--tokens", type=int, default=80, help="the live session's tokens")
    parser.add_argument("--video-tokens", type=int, default=40, help="the recording the videos show")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    engine = load_engine(args.model)
    image = Path(args.image).read_bytes()
    rates: dict[str, list[float]] = {"alone": [], "server renders (stopped while a session runs)": [],
                                     "renders never stopped (child, nice 19)": [],
                                     "renders in a thread of the server": []}
    renders: dict[str, list[float]] = {name: [] for name in rates}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "recordings"
        clip = record_clip(engine, image, args.video_tokens, folder)
        with background_server(Settings(model=args.model, recordings=folder), engine) as (app, port):
            token = app.state.settings.token or ""
            asyncio.run(tokens_per_second(port, image, 8))  # warm-up
            ways: dict[str, Callable[[], Any]] = {
                "alone": lambda: tokens_per_second(port, image, args.tokens),
                "server renders (stopped while a session runs)": lambda: with_route(port, token, image, args.tokens,
                                                                                     True),
                "renders never stopped (child, nice 19)": lambda: with_route(port, token, image, args.tokens, False),
                "renders in a thread of the server": lambda: with_thread(port, clip, Path(scratch) / "t.mp4", image,
                                                                         args.tokens),
            }
            for _ in range(args.rounds):
                for name, way in ways.items():
                    result = asyncio.run(way())
                    rate, made = (result, []) if isinstance(result, float) else result
                    rates[name].append(rate)
                    renders[name].extend(made)
    alone = statistics.median(rates["alone"])
    print(f"{args.model}, a live session of {args.tokens} tokens; the videos: {args.video_tokens} tokens, "
          f"1280x720 MP4 at the recorded timing; median of {args.rounds} rounds")
    print(f"{'while':46} {'tokens/s':>9} {'ratio':>6} {'videos made':>12} {'s per video':>12}")
    for name, values in rates.items():
        made = renders[name]
        per = f"{statistics.median(made):12.1f}" if made else f"{'-':>12}"
        print(f"{name:46} {statistics.median(values):9.2f} {statistics.median(values) / alone:6.2f} "
              f"{len(made):12d} {per}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "tokens": args.tokens, "rates": rates,
                                               "video_seconds": renders}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
