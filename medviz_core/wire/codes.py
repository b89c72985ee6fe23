"""The protocol's error codes and websocket close codes, and which close code ends which error.

Owns: `ErrorCode` (the `code` of every error frame and HTTP error answer), `CloseCode` (every
close code a medviz socket ends with, docs/protocol.md), `close_code_for` and `close_reason`.
Imports nothing: errors.py and the server read these.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class ErrorCode(str, Enum):
    """Machine-readable error codes (a str: it travels as is)."""

    BAD_IMAGE = "bad_image"
    BAD_REQUEST = "bad_request"
    BAD_FRAME = "bad_frame"
    TOO_LARGE = "too_large"
    BUSY = "busy"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    MODEL_LOAD = "model_load"
    CANCELLED = "cancelled"
    BAD_EXPORT = "bad_export"
    INTERNAL = "internal"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


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
