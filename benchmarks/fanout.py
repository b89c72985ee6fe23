"""Fan-out: does watching slow the model? One live session on loopback, watched by 1 and by N viewers.

For each run, a real uvicorn server (in this process, on a free loopback port) streams one
session; its owner is viewer 1 and the others are `websockets` clients in a child process
that join while the session waits in line behind a blocker session, so all see it whole.
Prints, side by side in ONE run on the same model, image and token count:
- tokens/s of the generation (the engine's own timing, from the `end` frame) and its
  ratio many/one: the worker never waits on viewers, so it should stay near 1;
- frame delay per step and viewer: arrival time minus the moment the step was encoded
  (`created` + `t_ms`), p50 and p99 in ms, counting only steps encoded after that viewer
  joined (a late joiner's catch-up is not a delay);
- where the CPU went: seconds of CPU used by the server's event-loop thread (all sends to
  all viewers) and by the viewers' process during the run, and the event loop's cost per
  frame delivered to one viewer, in microseconds (Linux; from /proc).

The viewers' process shares the machine's cores with the server, so on a small machine the
many-viewer run also pays for its clients: a pessimistic measure. Speed lives here, never in tests.

Usage: python benchmarks/fanout.py [--model tiny] [--viewers 200] [--tokens 48] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.types import GenerationParams  # noqa: E402
from medviz_core.wire import server_frames as frames  # noqa: E402
from medviz_core.wire.client_frames import CancelRequest, StartRequest  # noqa: E402
from medviz_core.wire.codec import unpack  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"
BLOCKER_TOKENS = 2048
SERVER_THREAD = "medviz-uvicorn"  # the name server.background gives the server's thread


@dataclass
class RunResult:
    viewers: int
    tokens: int
    tokens_per_s: float
    delays_ms: list[float]
    complete: int  # viewers that received the end frame
    wall_s: float  # from the moment the measured session could start to its end
    loop_cpu_s: float  # the server's event-loop thread
    viewers_cpu_s: float  # the viewers' child process (0 with one viewer: the owner is here)
    frames_delivered: int


def _thread_cpu_s(name: str) -> float:
    """CPU seconds (user + system) of this process's thread called `name`, from /proc; NaN elsewhere."""
    import os
    import threading

    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            try:
                fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                break
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


Samples = tuple[float, list[tuple[float, float]], bool]  # (joined, [(arrived, emitted)], got the end)


async def _follow(ws: ClientConnection, joined: float) -> Samples:
    """Read a session's frames; a step was emitted at `created` + `t_ms`.

    Only the msgpack map is read, not the typed frame (maps, regions): these clients stand
    for browsers on other machines, so the less CPU they take from the server's, the better.
    """
    samples: list[tuple[float, float]] = []
    created = None
    async for message in ws:
        assert isinstance(message, bytes)
        frame = unpack(message)
        kind = frame["type"]
        if kind == "start":
            created = float(frame["created"])
        elif kind == "step" and created is not None:
            samples.append((time.time(), created + float(frame["t_ms"]) / 1000.0))
        elif kind == "end":
            return joined, samples, True
    return joined, samples, False


async def _watch_many(url: str, count: int, ready: Any) -> list[Samples]:
    async def one() -> Samples:
        async with connect(url, max_size=None) as ws:
            joined = time.time()
            ready.put(1)
            return await _follow(ws, joined)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _viewer_process(url: str, count: int, ready: Any, results: Any, go: Any) -> None:
    """In a child process, so viewers do not share the server's interpreter lock."""
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    async def watch() -> tuple[list[Samples], float]:
        task = asyncio.ensure_future(_watch_many(url, count, ready))
        while not go.is_set():  # the CPU clock starts when the measured session may start
            await asyncio.sleep(0.005)
        started = cpu()
        seen = await task
        return seen, cpu() - started

    results.put(asyncio.run(watch()))


async def _queued_session_id(port: int) -> str:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(500):
            listing = (await client.get(f"http://127.0.0.1:{port}/api/sessions")).json()["sessions"]
            queued = [s["id"] for s in listing if s["state"] == "queued"]
            if queued:
                return str(queued[0])
            await asyncio.sleep(0.01)
    raise RuntimeError("the measured session never showed up in /api/sessions")


async def _session(port: int, image: bytes, viewers: int, tokens: int) -> RunResult:
    """A blocker session holds the model while the viewers join the queued measured one."""
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    base = f"ws://127.0.0.1:{port}"
    async with connect(f"{base}/ws/session", max_size=None) as blocker:
        blocking = StartRequest(images=(image,), params=GenerationParams(max_new_tokens=BLOCKER_TOKENS))
        await blocker.send(blocking.to_wire())
        await _recv(blocker)
        async with connect(f"{base}/ws/session", max_size=None) as owner:
            request = StartRequest(images=(image,), params=GenerationParams(max_new_tokens=tokens, seed=0))
            await owner.send(request.to_wire())
            session_id = await _queued_session_id(port)
            child = ctx.Process(target=_viewer_process, args=(f"{base}/ws/watch/{session_id}", viewers - 1,
                                                              ready, results, go), daemon=True)
            if viewers > 1:
                child.start()
            for _ in range(viewers - 1):
                await asyncio.to_thread(ready.get, True, 120)
            loop_cpu, wall = _thread_cpu_s(SERVER_THREAD), time.monotonic()
            go.set()
            await blocker.send(CancelRequest().to_wire())
            mine = await _follow(owner, time.time())
            loop_cpu, wall = _thread_cpu_s(SERVER_THREAD) - loop_cpu, time.monotonic() - wall
    seen: list[Samples] = [mine]
    viewers_cpu = 0.0
    if viewers > 1:
        theirs, viewers_cpu = await asyncio.to_thread(results.get, True, 600)
        seen += theirs
        child.join(30)
    end = await _end_of(port, session_id)
    delays = [1000.0 * (arrived - emitted) for joined, samples, _ in seen
              for arrived, emitted in samples if emitted >= joined]
    model_s = max(end["total_ms"] - end["prefill_ms"], 1e-9) / 1000.0
    return RunResult(viewers=viewers, tokens=end["tokens"], tokens_per_s=max(end["tokens"] - 1, 0) / model_s,
                     delays_ms=delays, complete=sum(1 for *_, ok in seen if ok), wall_s=wall,
                     loop_cpu_s=loop_cpu, viewers_cpu_s=viewers_cpu,
                     frames_delivered=sum(len(samples) for _, samples, _ in seen))


async def _end_of(port: int, session_id: str) -> dict[str, Any]:
    """The session's end frame, read back from its log through a late watcher."""
    async with connect(f"ws://127.0.0.1:{port}/ws/watch/{session_id}", max_size=None) as ws:
        async for message in ws:
            assert isinstance(message, bytes)
            frame = frames.decode(message)
            if isinstance(frame, frames.EndFrame):
                return {"tokens": frame.tokens, "total_ms": frame.total_ms, "prefill_ms": frame.prefill_ms}
    raise RuntimeError("the measured session has no end frame")


async def _recv(ws: ClientConnection) -> bytes:
    message = await ws.recv()
    assert isinstance(message, bytes)
    return message


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def _report(one: RunResult, many: RunResult, model: str) -> dict[str, Any]:
    rows = []
    for result in (one, many):
        rows.append({
            "viewers": result.viewers, "complete": result.complete, "tokens": result.tokens,
            "tokens_per_s": round(result.tokens_per_s, 2), "delay_samples": len(result.delays_ms),
            "delay_p50_ms": round(_percentile(result.delays_ms, 50), 2),
            "delay_p99_ms": round(_percentile(result.delays_ms, 99), 2),
            "wall_s": round(result.wall_s, 2), "server_loop_cpu_s": round(result.loop_cpu_s, 3),
            "viewers_process_cpu_s": round(result.viewers_cpu_s, 3),
            "loop_us_per_frame_per_viewer": round(1e6 * result.loop_cpu_s / max(result.frames_delivered, 1), 1),
        })
    return {"benchmark": "fanout", "model": model, "runs": rows,
            "tokens_per_s_ratio_many_over_one": round(many.tokens_per_s / max(one.tokens_per_s, 1e-9), 3)}


def _print_table(report: dict[str, Any]) -> None:
    print(f"fan-out on loopback, model {report['model']}")
    print(f"{'viewers':>8} {'got end':>8} {'tokens':>7} {'tokens/s':>9} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'wall s':>7} {'loop cpu s':>10} {'viewers cpu s':>13} {'loop us/frame':>13}")
    for row in report["runs"]:
        print(f"{row['viewers']:>8} {row['complete']:>8} {row['tokens']:>7} {row['tokens_per_s']:>9.2f} "
              f"{row['delay_samples']:>8} {row['delay_p50_ms']:>8.2f} {row['delay_p99_ms']:>8.2f}"
              f" {row['wall_s']:>7.2f} {row['server_loop_cpu_s']:>10.3f} {row['viewers_process_cpu_s']:>13.3f}"
              f" {row['loop_us_per_frame_per_viewer']:>13.1f}")
    print(f"tokens/s ratio, {report['runs'][1]['viewers']} viewers / 1 viewer: "
          f"{report['tokens_per_s_ratio_many_over_one']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--json", default=None, help="also write the JSON report here")
    args = parser.parse_args()
    from medviz_core.models import load_engine  # here, not at the top: the viewers' process re-imports this file
    from server.background import serve_in_background
    from server.settings import Settings

    engine = load_engine(args.model)
    image = Path(args.image).read_bytes()
    settings = Settings(model=args.model, recordings=Path("/nonexistent"), max_new_tokens=BLOCKER_TOKENS)
    with serve_in_background(settings, engine) as port:
        asyncio.run(_session(port, image, 1, 2))  # warm-up: first-run costs out of the comparison
        one = asyncio.run(_session(port, image, 1, args.tokens))
        many = asyncio.run(_session(port, image, args.viewers, args.tokens))
    report = _report(one, many, args.model)
    _print_table(report)
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
