"""A small Python client: follow a live session's websocket and print its tokens as they arrive.

Owns: `watch` (used by `medviz watch URL`): prints the text of each step, rejoins after a
4008 close (the server dropped it for falling behind) or an abnormal one (1006: the
connection was lost without a close frame), catching up from the session log and
skipping the steps it already printed, and ends with the session's end reason. Does not
own the frame format (medviz_core/wire/).
"""

from __future__ import annotations

import time
from typing import TextIO

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from medviz_core.errors import MedvizError
from medviz_core.wire.codes import CloseCode
from medviz_core.wire.server_frames import EndFrame, ErrorFrame, Frame, QueuedFrame, StartFrame, StepFrame, decode

MAX_FRAME = 256 * 1024 * 1024  # a start frame carries the image as PNG
MAX_REJOINS = 5
CLOSE_ABNORMAL = 1006  # what a client sees when the connection ends without a close frame
REJOIN_DELAY_S = 0.5  # before rejoining after a lost connection (a dropped viewer rejoins at once)
WHY = {CloseCode.TOO_SLOW: "fell behind", CLOSE_ABNORMAL: "lost the connection"}


def watch(url: str, out: TextIO, err: TextIO) -> EndFrame | None:
    """Print a live session's tokens; returns its end frame (None if the stream stopped early)."""
    printed = 0
    for _ in range(MAX_REJOINS + 1):
        end, printed, code = _follow(url, out, err, printed)
        code = CLOSE_ABNORMAL if code is None else code
        if end is not None or code not in WHY:
            return end
        err.write(f"\n[{WHY[code]} ({code}); rejoining and catching up from the session log]\n")
        if code == CLOSE_ABNORMAL:
            time.sleep(REJOIN_DELAY_S)
    return None


def _follow(url: str, out: TextIO, err: TextIO, printed: int) -> tuple[EndFrame | None, int, int | None]:
    try:
        with connect(url, max_size=MAX_FRAME, open_timeout=10) as ws:
            try:
                for message in ws:
                    if not isinstance(message, bytes):
                        raise MedvizError("the server sent a text message; expected msgpack frames")
                    frame = decode(message)
                    printed = _show(frame, out, err, printed)
                    if isinstance(frame, EndFrame):
                        return frame, printed, None
            except ConnectionClosed:
                pass
            return None, printed, ws.close_code
    except (OSError, InvalidURI, InvalidHandshake) as error:
        raise MedvizError(f"could not watch {url.split('?')[0]}: {error}") from None


def _show(frame: Frame, out: TextIO, err: TextIO, printed: int) -> int:
    if isinstance(frame, ErrorFrame):
        raise MedvizError(f"{frame.code}: {frame.message}")
    if isinstance(frame, StartFrame):
        if printed == 0:
            asked = "full report" if frame.question is None else "a question"
            err.write(f"[session {frame.session}: model {frame.model.name}, {asked}]\n")
    elif isinstance(frame, QueuedFrame):
        err.write(f"[waiting: position {frame.position}]\n")
    elif isinstance(frame, StepFrame) and frame.index >= printed:
        out.write(frame.text)
        out.flush()
        return frame.index + 1
    elif isinstance(frame, EndFrame):
        out.write("\n")
        err.write(f"[{frame.reason}: {frame.tokens} tokens in {frame.total_ms / 1000:.1f} s]\n")
    return printed
