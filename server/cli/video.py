"""`medviz video REC --out FILE`: a recording as a video for slides (MP4, GIF or WebP by the suffix).

Owns: the command's arguments, its progress bar on stderr (tqdm) and the line saying what was written.
`add_video_command(subparsers)` is called by cli/main.py, which prints a MedvizError as one line (exit 2).
The server's Video button runs this same command in a child process (server/teaching/videos.py), so both give the
same bytes. Does not own the frames or the encoding (medviz_core/export/video.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from medviz_core.errors import MedvizError

DEFAULT_SIZE = "1280x720"


def _video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from medviz_core.export.video import VideoOptions, format_of, parse_size, plan_video, write_video

    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)  # first, so reading the recording runs at that priority too; ffmpeg inherits it
    out = Path(args.out).expanduser()
    format_of(out)  # an unknown suffix is refused before the recording is read
    options = VideoOptions(method=args.method, size=parse_size(args.size), speed=1.0 if args.speed is None
                           else args.speed, fps=args.fps, tokens=args.token_range)
    recording = Path(args.recording).expanduser()
    if not recording.is_file():
        raise MedvizError(f"no recording at {args.recording!r}")
    plan = plan_video(recording, out, options)
    with tqdm(total=len(plan.shown), unit="token", desc="medviz video", file=sys.stderr, disable=args.quiet,
              dynamic_ncols=True) as bar:
        result = write_video(plan, out, lambda done, _: bar.update(done - bar.n))
    timing = f"{options.fps} tokens a second" if options.fps else f"{options.speed:g}x the recorded timing"
    print(f"medviz: wrote {result.path} ({result.tokens} tokens, {result.seconds:.1f} s at {timing}, "
          f"{result.path.stat().st_size} bytes)")
    return 0


def add_video_command(subparsers: Any) -> None:
    video = subparsers.add_parser("video", help="a recording as a video for slides: MP4 (H.264), GIF or WebP")
    video.add_argument("recording", help="a .medviz file")
    video.add_argument("--out", required=True, help="FILE.mp4 (H.264: PowerPoint, Keynote, browsers), FILE.gif or "
                       "FILE.webp (animated)")
    video.add_argument("--method", default="consensus", help="the map shown (default consensus)")
    timing = video.add_mutually_exclusive_group()
    timing.add_argument("--speed", type=float, default=None,
                        help="the recording's own timing, this many times faster (default 1)")
    timing.add_argument("--fps", type=int, default=None, help="one token per frame, N frames a second")
    video.add_argument("--size", default=DEFAULT_SIZE, help=f"WxH in pixels, even sides (default {DEFAULT_SIZE})")
    video.add_argument("--token-range", default=None, metavar="A:B",
                       help="only tokens A..B, both included (default: every token)")
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    video.add_argument("--nice", type=int, default=0, metavar="N",
                       help="lower this render's CPU priority by N (the server's renders use 19, the lowest)")
    video.set_defaults(handler=_video)
