"""How often one session opens and decodes its image: `pydicom.dcmread` calls and pixel decodes, counted.

A real uvicorn server (in this process, on a free loopback port, the `tiny` model) runs one
session over one image (default: the DICOM in ../shared/data/cxr) and this script counts, for
that session from the `start` frame sent to the socket's close: every `pydicom.dcmread` (header
reads, `stop_before_pixels`, apart from full reads), every DICOM pixel decode
(`pydicom.pixels.utils.pixel_array`) and every PNG/JPEG decode (`imaging._load_pillow`), each
with where it came from: the calling medviz function and the thread (`medviz-decode`: admission,
`medviz-generation`: the run). Issue 24 item 5 wants each image decoded once per process that
needs it and a DICOM's header read once; counts, not speed, so this runs anywhere in seconds.

Usage: python benchmarks/decode_count.py [--image FILE] [--tokens 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
import pydicom.pixels.utils  # noqa: E402

from medviz_core.imaging import load as imaging  # noqa: E402
from medviz_core.models.load import load_engine  # noqa: E402
from medviz_core.wire.client_frames import ParamsRequest, StartRequest  # noqa: E402
from server.background import background_server  # noqa: E402
from server.settings import Settings  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000002_000_dx.dcm"
counts: Counter[str] = Counter()


def _caller() -> str:
    """The innermost medviz or server function on the stack below the wrapper (file:function)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = Path(frame.filename)
        if REPO in path.parents and REPO / "medviz_core" in path.parents or REPO / "server" in path.parents:
            return f"{path.relative_to(REPO)}:{frame.name}"
    return "?"


def counted(name: str, function: Callable[..., Any], what: Callable[..., str] = lambda *a, **k: "") -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        thread = threading.current_thread().name.rstrip("_0123456789")  # medviz-decode: admission
        counts[f"{name}{what(*args, **kwargs)} <- {_caller()} on {thread}"] += 1
        return function(*args, **kwargs)

    return wrapper


def install() -> None:
    """Wrap the functions counted (callers look them up at call time, so the wrappers see every call)."""
    pydicom.dcmread = counted("dcmread", pydicom.dcmread,
                              lambda *a, **k: " (header)" if k.get("stop_before_pixels") else " (full)")
    pydicom.pixels.utils.pixel_array = counted("DICOM pixel decode", pydicom.pixels.utils.pixel_array)
    imaging._load_pillow = counted("PNG/JPEG decode", imaging._load_pillow)


async def one_session(port: int, image: bytes, tokens: int) -> int:
    """Run a session to its end; returns the number of frames the owner got."""
    start = StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=tokens))
    got = 0
    async with connect(f"ws://127.0.0.1:{port}/ws/session", max_size=None) as ws:
        await ws.send(start.to_wire())
        async for _ in ws:
            got += 1
    return got


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    engine = load_engine("tiny")
    image = Path(args.image).read_bytes()
    install()
    with tempfile.TemporaryDirectory() as folder, \
            background_server(Settings(model="tiny", recordings=Path(folder)), engine) as (_, port):
        frames = asyncio.run(one_session(port, image, args.tokens))
    totals = Counter({kind: sum(n for key, n in counts.items() if key.startswith(kind))
                      for kind in ("dcmread", "DICOM pixel decode", "PNG/JPEG decode")})
    print(f"one session over {Path(args.image).name} ({frames} frames, tiny, {args.tokens} tokens)")
    for key, n in sorted(counts.items()):
        print(f"  {n:3d}  {key}")
    print("totals: " + ", ".join(f"{kind} {n}" for kind, n in totals.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"calls": dict(counts), "totals": dict(totals)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
