"""`medviz html REC --out FILE.html`: a recording as one self-contained HTML file that plays it from disk
with no server (docs/offline-player.md).

Owns the command's arguments and its one line of output. Does not own the page (server/teaching/offline_player.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from server.settings import WEB_DIR
from server.teaching.offline_player import write_player


def _html(args: argparse.Namespace) -> int:
    recording, out = Path(args.recording), Path(args.out)
    size = write_player(recording, out, WEB_DIR)
    source = recording.stat().st_size
    print(f"wrote {out}: {size / 1e6:.2f} MB, {size / source:.2f}x the recording's {source / 1e6:.2f} MB; "
          f"open it in a browser (add #play&speed=8 to start at once at 8x)")
    return 0


def add_html_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("html", help="write a recording as one HTML file that plays it with no server")
    parser.add_argument("recording", help="a .medviz recording")
    parser.add_argument("--out", required=True, help="the HTML file to write (never overwritten)")
    parser.set_defaults(handler=_html)
