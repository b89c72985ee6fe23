"""Client frames for the tests, written through the wire package's typed requests (no field names here)."""

from __future__ import annotations

from typing import Any

from medviz_core.wire.client_frames import (
    AnalyzeRequest,
    CancelAnalysisRequest,
    CancelRequest,
    ParamsRequest,
    PauseRequest,
    ResumeRequest,
    SeekRequest,
    SpeedRequest,
    StartRequest,
)

SAMPLING = ("temperature", "top_p", "top_k", "repetition_penalty", "seed")
COMMANDS: dict[str, Any] = {"cancel": CancelRequest, "pause": PauseRequest, "resume": ResumeRequest,
                            "seek": SeekRequest, "speed": SpeedRequest, "cancel_analysis": CancelAnalysisRequest}


def start_request(image: bytes | None = None, max_new_tokens: int = 4, **fields: Any) -> StartRequest:
    """A StartRequest of one image (or `images=`); sampling fields (temperature=...) go into its params."""
    sampling = {key: fields.pop(key) for key in SAMPLING if key in fields}
    images = tuple(fields.pop("images", None) or (image,))
    methods = fields.pop("methods", None)
    return StartRequest(images=images, params=ParamsRequest(max_new_tokens=max_new_tokens, **sampling),
                        methods=None if methods is None else tuple(methods),
                        labels=tuple(fields.pop("labels", ())), **fields)


def encode_client_start(request: StartRequest) -> bytes:
    return request.to_wire()


def encode_command(kind: str, **fields: Any) -> bytes:
    """cancel, pause, resume, seek(index=), speed(value=), cancel_analysis(job=, id=)."""
    return bytes(COMMANDS[kind](**fields).to_wire())


def encode_analyze(request: AnalyzeRequest) -> bytes:
    return request.to_wire()
