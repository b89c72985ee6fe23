"""The typed errors of medviz. Every error a user can cause or meet has a class and a code.

Owns: the error hierarchy and its stable `code` strings, `ErrorCode` (the server puts them
in error frames and HTTP error answers; wire/codes.py maps them to close codes). A base
module: it imports no other medviz module. Does not own: how errors are shown (CLI prints
one line, server sends a frame).
Messages name what was expected and what came, and never carry image bytes or prompts.
"""

from __future__ import annotations

from enum import Enum


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


class MedvizError(Exception):
    """Base class. `code` is stable and machine-readable; the message is for people."""

    code: str = ErrorCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageError(MedvizError):
    """The image bytes could not be turned into a picture the model can read."""

    code: str = ErrorCode.BAD_IMAGE


class ModelLoadError(MedvizError):
    """The model reference could not be resolved or loaded."""

    code: str = ErrorCode.MODEL_LOAD


class RequestError(MedvizError):
    """A request is malformed or out of bounds (types, sizes, limits)."""

    code: str = ErrorCode.BAD_REQUEST


class ProtocolError(MedvizError):
    """Bytes on the wire or in a recording are not a valid medviz frame."""

    code: str = ErrorCode.BAD_FRAME


class BusyError(MedvizError):
    """The generation queue is full."""

    code: str = ErrorCode.BUSY


class AuthError(MedvizError):
    """Missing or wrong access token, or a foreign Origin."""

    code: str = ErrorCode.UNAUTHORIZED


class NotFoundError(MedvizError):
    """A session or recording that does not exist."""

    code: str = ErrorCode.NOT_FOUND


class ConflictError(MedvizError):
    """A request that conflicts with what the server is doing (deleting a recording still being written)."""

    code: str = ErrorCode.CONFLICT


class MessageTooLarge(RequestError):
    """A client message over the server's size limit."""

    code: str = ErrorCode.TOO_LARGE


class Cancelled(MedvizError):
    """An analysis job was cancelled before it finished."""

    code: str = ErrorCode.CANCELLED


class ExportError(MedvizError):
    """A map cannot be exported as DICOM: bad inputs, a source header without the UIDs a
    reference needs, or an output folder that cannot be written. Nothing was written."""

    code: str = ErrorCode.BAD_EXPORT


class VideoError(RequestError):
    """A recording cannot be made into a video as asked: an unknown suffix, no tokens, a method it lacks, a bad
    size, speed, frame rate or token range (export/video.py). Nothing was written."""
