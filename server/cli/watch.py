"""A small Python client: follow a live session's websocket and print its tokens as they arrive.

Owns: `socket_url` (the link the browser's Share button copies, `http(s)://host/?watch=ID`
or `?replay=ID` with its `token`, or a websocket URL as it is -> the websocket to follow)
and `watch` (used by `medviz watch URL`): prints the text of each step, rejoins after a
4008 close (the server dropped it for falling behind) or an abnormal one (1006: the
connection was lost without a close frame), catching up from the session log and
skipping the steps it already printed, and ends with the session's end reason. Does not
own the frame format (medviz_core/wire/).
"""

from __future__ import annotations

import time
from typing import TextIO
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

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
REPLAY_SPEED = 8  # a replay link is followed at the fastest replay speed
SOCKETS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def socket_url(link: str) -> str:
    """The websocket to follow for `link`: a ws(s) URL as it is; an http(s) one with `?watch=ID` (a live
    session) or `?replay=ID` (a recording, at REPLAY_SPEED) -> its /ws/watch or /ws/replay socket under the
    page's path, its `token` kept; an http(s) URL of a socket path -> the same path as ws(s). MedvizError
    for anything else, naming what a link looks like."""
    parts = urlsplit(link.strip())
    scheme = SOCKETS.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise MedvizError(f"a link to watch is http(s)://HOST/?watch=ID (the Share button's), ?replay=ID, or "
                          f"ws(s)://HOST/ws/watch/ID; got {link.split('?')[0][:200]!r}")
    query = parse_qs(parts.query)
    base = parts.path.rsplit("/", 1)[0]  # the page's folder: "" at the server's root
    kept = {"token": query["token"][0]} if query.get("token") else {}
    if parts.scheme.lower() in ("ws", "wss") or "/ws/" in parts.path:  # a socket's own URL
        return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))
    if query.get("watch"):
        path = f"{base}/ws/watch/{quote(query['watch'][0], safe='')}"
    elif query.get("replay"):
        path, kept = f"{base}/ws/replay/{quote(query['replay'][0], safe='')}", {**kept, "speed": str(REPLAY_SPEED)}
    else:
        raise MedvizError("the page link names no session: it needs ?watch=ID (a live session) or ?replay=ID (a "
                          f"recording); got {link.split('?')[0][:200]!r}")
    return urlunsplit((scheme, parts.netloc, path, urlencode(kept), ""))


def watch(url: str, out: TextIO, err: TextIO) -> EndFrame | None:
    """Print a live session's tokens (or a recording's, for a replay link); `url` as socket_url takes it.
    Returns the session's end frame (None if the stream stopped early)."""
    url = socket_url(url)
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
