"""Abuse: can one client starve, bloat or stall the server? Measured in one run against a local server.

Starts `medviz serve --model tiny` as a child process on a free loopback port (its own
settings, limits and logging, as a user runs it), then, one after another:
1. item bomb: 19.9 MB msgpack messages (a `start` map whose extra field is an array of
   19.9 M empty arrays), five one after another on each of three sockets at once, while
   /api/health is asked every 50 ms: the health latency during the bombs (target: under
   0.5 s) and what the bombs got;
2. image bombs, three requests at once in each group: 389 KB 16-bit RGBA PNGs of 7071 x
   7071, studies of four 64 KB gray PNGs of 7071 x 7071, and two-image studies of 4000 x
   4000 gray PNGs that fit the image budget (they run): the server's peak resident-memory
   growth per group, from its kernel high-water mark (VmHWM) reset through
   /proc/<pid>/clear_refs (target: under 1 GB);
3. analysis flood: a 20-token session's wall time (start sent to end received) unloaded
   (median of three), then again right after one replay socket sent 300 different analyze
   requests (gradient, heads and faithfulness of three methods, over the 60 tokens of a
   recording) and one of them runs, with how many were queued and how many answered busy
   (target: flood time <= 3 x unloaded + 1 s).
Prints a table and one JSON line. Needs Linux (/proc). Speed lives here, never in tests.

Usage: python benchmarks/abuse.py [--model tiny] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.wire import server_frames as frames  # noqa: E402
from medviz_core.wire.client_frames import AnalyzeRequest, ParamsRequest, StartRequest  # noqa: E402
from medviz_core.wire.results import AnalysisFrame  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"
GB = 1024 ** 3


# -- the server ---------------------------------------------------------------------------


def start_server(model: str, recordings: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "server.cli.main", "serve", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--recordings", str(recordings)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError("the server did not answer /api/health within 180 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it; killed if it is still there after 20 s (kill is a no-op once it exited)."""
    proc.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    proc.kill()
    proc.wait()


def status_kb(pid: int, field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"/proc/{pid}/status has no {field}")
    return int(found.group(1))


# -- inputs -------------------------------------------------------------------------------


def item_bomb(arrays: int = 19_900_000) -> bytes:
    head: bytes = msgpack.packb({"type": "start", "image": b"png"})
    return bytes([head[0] + 1]) + head[1:] + msgpack.packb("x") + b"\xdd" + struct.pack(">I", arrays) + b"\x90" * arrays


def rgba16_png(side: int = 7071) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer, row = zlib.compressobj(9), b"\x00" + bytes(side * 8)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def gray_png(side: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (side, side), 9).save(out, format="PNG", compress_level=9)
    return out.getvalue()


def start_frame(images: list[bytes], tokens: int = 1, record: bool = False) -> bytes:
    return StartRequest(images=tuple(images), params=ParamsRequest(max_new_tokens=tokens), record=record).to_wire()


# -- one socket ---------------------------------------------------------------------------


async def answer(ws: ClientConnection) -> list[frames.Frame]:
    """Every frame until the server closes (a refusal's 44xx close ends the exchange too: its
    error frame, already read, says why)."""
    out: list[frames.Frame] = []
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            if isinstance(message, bytes):
                out.append(frames.decode(message))
    return out


async def send_and_read(port: int, message: bytes, times: int = 1) -> list[frames.Frame]:
    """Send `message` on a fresh socket `times` times, one after another; the last answer."""
    got: list[frames.Frame] = []
    for _ in range(times):
        async with connect(f"ws://127.0.0.1:{port}/ws/session", max_size=None) as ws:
            await ws.send(message)
            got = await answer(ws)
    return got


def summary(got: list[frames.Frame]) -> str:
    last = got[-1] if got else None
    if isinstance(last, frames.ErrorFrame):
        return f"{last.code}: {last.message[:110]}"
    return " ".join(f.type for f in got if f.type != "queued")[:110]


# -- the three measures -------------------------------------------------------------------


async def item_bombs(port: int) -> dict[str, Any]:
    bomb = item_bomb()
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        baseline = []
        for _ in range(10):
            start = time.perf_counter()
            await http.get("/api/health")
            baseline.append(time.perf_counter() - start)
        bombs = asyncio.gather(*(send_and_read(port, bomb, times=5) for _ in range(3)))
        while not bombs.done():
            start = time.perf_counter()
            await http.get("/api/health")
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)
        answers = await bombs
    return {"bomb_bytes": len(bomb), "bombs": 15, "health_during_max_s": max(latencies), "health_during_p50_s":
            statistics.median(latencies), "health_polls": len(latencies), "health_unloaded_p50_s":
            statistics.median(baseline), "answers": [summary(a) for a in answers]}


async def image_bombs(port: int, pid: int) -> dict[str, Any]:
    groups = {
        "three 16-bit RGBA 7071x7071 PNGs": [start_frame([rgba16_png()])] * 3,
        "three studies of four gray 7071x7071 PNGs": [start_frame([gray_png(7071)] * 4)] * 3,
        "three studies of two gray 4000x4000 PNGs (run)": [start_frame([gray_png(4000)] * 2)] * 3,
    }
    out: dict[str, Any] = {}
    for name, messages in groups.items():
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = status_kb(pid, "VmRSS")
        answers = await asyncio.gather(*(send_and_read(port, m) for m in messages))
        growth = (status_kb(pid, "VmHWM") - before) * 1024
        out[name] = {"file_bytes": len(messages[0]), "peak_rss_growth_bytes": growth,
                     "answers": [summary(a) for a in answers]}
    return out


async def timed_session(port: int, image: bytes, tokens: int = 20) -> float:
    async with connect(f"ws://127.0.0.1:{port}/ws/session", max_size=None) as ws:
        start = time.perf_counter()
        await ws.send(start_frame([image], tokens))
        got = await answer(ws)
    if not got or not isinstance(got[-1], frames.EndFrame):
        raise RuntimeError(f"the session did not end: {summary(got)}")
    return time.perf_counter() - start


async def analysis_flood(port: int, image: bytes) -> dict[str, Any]:
    async with connect(f"ws://127.0.0.1:{port}/ws/session", max_size=None) as ws:
        await ws.send(start_frame([image], 60, record=True))
        recording = next(f.session for f in await answer(ws) if isinstance(f, frames.StartFrame))
    await timed_session(port, image)  # warm-up
    unloaded = statistics.median([await timed_session(port, image) for _ in range(3)])
    variants: list[dict[str, Any]] = [{"kind": "gradient"}, {"kind": "heads"}] + [
        {"kind": "faithfulness", "method": method, "steps": 8} for method in ("consensus", "raw", "rollout")]
    # 300 requests, all different
    requests = [AnalyzeRequest(index=token, **variant) for variant in variants for token in range(60)]
    async with connect(f"ws://127.0.0.1:{port}/ws/replay/{recording}?speed=8", max_size=None) as flood:
        for request in requests:
            await flood.send(request.to_wire())
        queued: set[str] = set()
        busy = running = 0
        while len(queued) + busy < len(requests) or not running:  # every request answered, one job running
            frame = frames.decode(await flood.recv())  # type: ignore[arg-type]
            if isinstance(frame, AnalysisFrame):
                queued.add(frame.job)
                running += frame.status == "running"
            elif isinstance(frame, frames.ErrorFrame):
                busy += frame.code == "busy"
                if frame.code != "busy":
                    raise RuntimeError(f"a flood request was refused: {frame.code}: {frame.message}")
        flooded = await timed_session(port, image)
    return {"session_tokens": 20, "unloaded_s": unloaded, "under_flood_s": flooded, "flood_requests": len(requests),
            "flood_queued": len(queued), "flood_busy": busy, "target_s": 3 * unloaded + 1}


# -- report -------------------------------------------------------------------------------


def show(report: dict[str, Any]) -> None:
    bomb = report["item_bomb"]
    print(f"model {report['model']}, one run, {report['date']}")
    print(f"1. item bomb ({bomb['bomb_bytes']} bytes, {bomb['bombs']} on 3 sockets at once): "
          f"/api/health max {bomb['health_during_max_s']:.3f} s, "
          f"p50 {bomb['health_during_p50_s']:.3f} s over {bomb['health_polls']} polls (unloaded p50 "
          f"{bomb['health_unloaded_p50_s']:.3f} s; target < 0.5 s: "
          f"{'met' if bomb['health_during_max_s'] < 0.5 else 'MISSED'})")
    for answered in bomb["answers"]:
        print(f"   answered {answered}")
    print("2. image bombs (peak RSS growth of the server; target < 1 GB)")
    for name, group in report["image_bombs"].items():
        growth = group["peak_rss_growth_bytes"]
        print(f"   {name:48} {growth / GB:6.3f} GB  {'met' if growth < GB else 'MISSED'}  "
              f"(start frames of {group['file_bytes']} "
              f"bytes: {group['answers'][0]})")
    flood = report["analysis_flood"]
    print(f"3. 20-token session: unloaded {flood['unloaded_s']:.2f} s, under a flood of {flood['flood_requests']} "
          f"analyses ({flood['flood_queued']} queued, {flood['flood_busy']} busy) {flood['under_flood_s']:.2f} s; "
          f"target <= {flood['target_s']:.2f} s: {'met' if flood['under_flood_s'] <= flood['target_s'] else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--json", default=None, help="also write the JSON report here")
    args = parser.parse_args()
    image = Path(args.image).read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        proc, port = start_server(args.model, Path(folder))
        try:
            report = {"model": args.model, "date": time.strftime("%Y-%m-%d"),
                      "item_bomb": asyncio.run(item_bombs(port)),
                      "image_bombs": asyncio.run(image_bombs(port, proc.pid)),
                      "analysis_flood": asyncio.run(analysis_flood(port, image))}
        finally:
            stop(proc)
    show(report)
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
