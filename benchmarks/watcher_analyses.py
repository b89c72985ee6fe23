"""Does a watcher's analysis delay the owner's live session? One 20-token session, alone and with a watcher.

A real uvicorn server (in this process, on a free loopback port, the `tiny` model) runs the same
session three ways: alone; with a watcher that, once 8 steps are out, asks `faithfulness` with 8
patch-deletion steps; and with one that asks it with 256 steps (each step a forward pass: seconds
here). It prints the session's wall time from `start` to `end` as the owner sees it, and each loaded
run's ratio to the unloaded one. docs/security.md's promise: within 3x + 1 s (before the fix a
256-step request held a 0.6 s session for minutes). Speed lives here, never in tests;
tests/server/test_worker.py holds the order of work (every frame of the session before any of the
watcher's analyses).

Usage: python benchmarks/watcher_analyses.py [--tokens 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.models.load import load_engine  # noqa: E402
from medviz_core.wire import server_frames as frames  # noqa: E402
from medviz_core.wire.client_frames import AnalyzeRequest, ParamsRequest, StartRequest  # noqa: E402
from server.background import background_server  # noqa: E402
from server.settings import Settings  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"
WATCH_AT = 8  # steps the owner has seen when the watcher asks


async def one_session(port: int, image: bytes, tokens: int, faithfulness_steps: int) -> float:
    """Seconds from the owner's `start` frame to its `end`, with a watcher asking faithfulness (0: none)."""
    start = StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=tokens))
    async with connect(f"ws://127.0.0.1:{port}/ws/session", max_size=None) as owner:
        await owner.send(start.to_wire())
        began, seen, watcher = 0.0, 0, None
        try:
            while True:
                frame = frames.decode(await owner.recv())
                if isinstance(frame, frames.StartFrame):
                    began = time.perf_counter()
                    session = frame.session
                elif isinstance(frame, frames.StepFrame):
                    seen += 1
                    if seen == WATCH_AT and faithfulness_steps:
                        watcher = await connect(f"ws://127.0.0.1:{port}/ws/watch/{session}", max_size=None)
                        request = AnalyzeRequest("faithfulness", WATCH_AT - 1, "raw", steps=faithfulness_steps)
                        await watcher.send(request.to_wire())
                elif isinstance(frame, frames.EndFrame):
                    return time.perf_counter() - began
        finally:
            if watcher is not None:
                await watcher.close()  # its job, nobody else's, stops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    engine = load_engine("tiny")
    image = Path(args.image).read_bytes()
    with tempfile.TemporaryDirectory() as folder, \
            background_server(Settings(model="tiny", recordings=Path(folder)), engine) as (_, port):
        asyncio.run(one_session(port, image, args.tokens, 0))  # warm-up
        times = {steps: asyncio.run(one_session(port, image, args.tokens, steps)) for steps in (0, 8, 256)}
    alone = times[0]
    print(f"tiny, {args.tokens} tokens: the owner's session from start to end")
    print(f"{'watcher asks':28} {'seconds':>8} {'ratio':>6} {'bound 3x+1s':>12}")
    for steps, seconds in times.items():
        label = "nothing" if steps == 0 else f"faithfulness, {steps} steps"
        print(f"{label:28} {seconds:8.3f} {seconds / alone:6.2f} {'ok' if seconds <= 3 * alone + 1 else 'OVER':>12}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tokens": args.tokens, "seconds": times}, indent=2))
    return 0 if all(s <= 3 * alone + 1 for s in times.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
