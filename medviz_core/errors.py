"""The typed errors of medviz. Every error a user can cause or meet has a class and a code.

Owns: the error hierarchy and its stable `code` strings (the server puts them in error
frames). Does not own: how errors are shown (CLI prints one line, server sends a frame).
Messages name what was expected and what came, and never carry image bytes or prompts.
"""

from __future__ import annotations


class MedvizError(Exception):
    """Base class. `code` is stable and machine-readable; the message is for people."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageError(MedvizError):
    """The image bytes could not be turned into a picture the model can read."""

    code = "bad_image"


class ModelLoadError(MedvizError):
    """The model reference could not be resolved or loaded."""

    code = "model_load"


class RequestError(MedvizError):
    """A request is malformed or out of bounds (types, sizes, limits)."""

    code = "bad_request"


class ProtocolError(MedvizError):
    """Bytes on the wire or in a recording are not a valid medviz frame."""

    code = "bad_frame"


class BusyError(MedvizError):
    """The generation queue is full."""

    code = "busy"


class AuthError(MedvizError):
    """Missing or wrong access token, or a foreign Origin."""

    code = "unauthorized"


class NotFoundError(MedvizError):
    """A session or recording that does not exist."""

    code = "not_found"


class ConflictError(MedvizError):
    """A request that conflicts with what the server is doing (deleting a recording still being written)."""

    code = "conflict"


class MessageTooLarge(RequestError):
    """A client message over the server's size limit."""

    code = "too_large"


class Cancelled(MedvizError):
    """An analysis job was cancelled before it finished."""

    code = "cancelled"


class ExportError(MedvizError):
    """A map cannot be exported as DICOM: bad inputs, a source header without the UIDs a
    reference needs, or an output folder that cannot be written. Nothing was written."""

    code = "bad_export"
