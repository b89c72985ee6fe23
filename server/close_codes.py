"""Websocket close codes and reasons: which code ends a socket for which outcome (docs/protocol.md).

Owns: `CLOSE_CODES` (error code -> close code), the codes that carry no error frame
(4008 a viewer fell behind, 4408 a socket sat idle) and `close_reason` (at most 123 bytes
of UTF-8). Does not own when a socket closes (live.py, replay.py, broadcast.py).
"""

from __future__ import annotations

CLOSE_NORMAL = 1000
CLOSE_TOO_SLOW = 4008
CLOSE_IDLE = 4408
CLOSE_CODES = {"bad_request": 4400, "bad_frame": 4400, "bad_image": 4415, "too_large": 4413,
               "not_found": 4404, "busy": 4429, "unauthorized": 4001, "internal": 4500}


def close_code(error_code: str) -> int:
    """The close code for an error frame's code; an unknown code closes as internal (4500)."""
    return CLOSE_CODES.get(error_code, CLOSE_CODES["internal"])


def close_reason(text: str) -> str:
    """A websocket close reason: at most 123 bytes of UTF-8."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", errors="ignore")
