"""`medviz deidentify REC --out NEW`: a teaching copy of a recording, without its patient's identity.

Owns: the command's arguments and handler; `add_deidentify_command(subparsers)` is called by cli/main.py (which
prints a MedvizError as one line, exit 2). The copy itself (every frame, the source frame's headers through the
Basic Application Level Confidentiality Profile, new random session and recording ids, recorded DICOM exports
dropped, a summary sidecar; a DICOM that says it has burned-in annotation refused unless `--allow-burned-in`) is
medviz_core/recording/deidentify.py's `deidentify_recording`; the original is only read, and NEW is never
overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medviz_core.errors import MedvizError


def _deidentify(args: argparse.Namespace) -> int:
    from medviz_core.recording.deidentify import deidentify_recording
    from medviz_core.recording.file import SUFFIX

    source, out = Path(args.recording), Path(args.out).expanduser()
    if not source.is_file():
        raise MedvizError(f"no recording at {args.recording!r}")
    if out.suffix != SUFFIX:
        raise MedvizError(f"--out must name a {SUFFIX} file (medviz serve lists those); got {args.out!r}")
    copy = deidentify_recording(source, out, allow_burned_in=args.allow_burned_in)
    dropped = (f"; dropped {copy.dropped} recorded DICOM export(s), ask for them again from the copy"
               if copy.dropped else "")
    print(f"medviz: wrote {out}: {copy.frames} frames, {copy.headers} DICOM header(s) de-identified{dropped}")
    return 0


def add_deidentify_command(subparsers: Any) -> None:
    parser = subparsers.add_parser("deidentify", help="copy a recording without its patient's identity (teaching)")
    parser.add_argument("recording", help="a .medviz file (only read)")
    parser.add_argument("--out", required=True, help="the new .medviz file (never overwritten)")
    parser.add_argument("--allow-burned-in", action="store_true",
                        help="copy a recording whose DICOM says it has burned-in annotation (text in its pixels, which "
                        "header de-identification cannot remove)")
    parser.set_defaults(handler=_deidentify)
