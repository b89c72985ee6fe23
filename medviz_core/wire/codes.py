"""The protocol's error codes and websocket close codes, and which close code ends which error.

Owns: `CloseCode` (every close code a medviz socket ends with, docs/protocol.md),
`close_code_for` (which close code ends which `ErrorCode`) and `close_reason`. `ErrorCode`
itself is errors.py's (the domain's errors carry it); it is re-exported here for the server,
which reads both from this module.
"""

from __future__ import annotations

from enum import IntEnum

from medviz_core.errors import ErrorCode

__all__ = ["CloseCode", "ErrorCode", "close_code_for", "close_reason"]


class CloseCode(IntEnum):
    NORMAL = 1000  # the session ended, after its `end` frame
    UNAUTHORIZED = 4001  # missing or wrong token
    FORBIDDEN = 4003  # foreign Origin or Host
    TOO_SLOW = 4008  # the viewer fell too far behind; no error frame
    BAD_REQUEST = 4400
    NOT_FOUND = 4404
    IDLE = 4408  # the socket sat idle; no error frame
    TOO_LARGE = 4413
    BAD_IMAGE = 4415
    BUSY = 4429
    INTERNAL = 4500


_CLOSE_FOR = {
    ErrorCode.BAD_REQUEST: CloseCode.BAD_REQUEST, ErrorCode.BAD_FRAME: CloseCode.BAD_REQUEST,
    ErrorCode.BAD_EXPORT: CloseCode.BAD_REQUEST, ErrorCode.BAD_IMAGE: CloseCode.BAD_IMAGE,
    ErrorCode.TOO_LARGE: CloseCode.TOO_LARGE, ErrorCode.NOT_FOUND: CloseCode.NOT_FOUND,
    ErrorCode.BUSY: CloseCode.BUSY, ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
}


def close_code_for(code: str) -> CloseCode:
    """The close code for an error frame's code; anything else closes as internal (4500)."""
    try:
        return _CLOSE_FOR.get(ErrorCode(code), CloseCode.INTERNAL)
    except ValueError:
        return CloseCode.INTERNAL


def close_reason(text: str) -> str:
    """A websocket close reason: at most 123 bytes of UTF-8."""
    return text.encode("utf-8")[:123].decode("utf-8", errors="ignore")
