"""Wire protocol v1, client -> server (docs/protocol.md): the field names of what clients send.

Owns: `ClientLimits`, validating every client frame into a typed request of
medviz_core/frame_types.py (`parse_client_frame`: types, sizes, counts, ranges that need
no engine), and encoding them for Python clients, tests and benchmarks
(`encode_client_start`, `encode_command`, `encode_analyze`). Does not own server frames
(medviz_core/frames.py) or checks that need the engine or the session (sampling bounds,
the methods a session computes, whether a token exists yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medviz_core.errors import MessageTooLarge, ProtocolError, RequestError
from medviz_core.frame_types import (
    ANALYSIS_KINDS, MAX_IMAGES, MAX_LABEL_CHARS, AnalyzeRequest, BoxRequest, CancelAnalysisRequest, CancelRequest,
    ClientFrame, PauseRequest, ResumeRequest, SeekRequest, SpeedRequest, StartRequest, get_field, optional_field,
)
from medviz_core.frames import pack_frame, unpack_frame
from medviz_core.msgpack_limits import client_limits
from medviz_core.types import METHODS, GenerationParams

CLIENT_TYPES = ("start", "cancel", "pause", "resume", "seek", "speed", "analyze", "cancel_analysis")
ANALYSIS_COMMANDS = ("analyze", "cancel_analysis")
MAX_BOXES = 32
MAX_FAITHFULNESS_STEPS = 256
DEFAULT_FAITHFULNESS_STEPS = 8
MAX_JOB_CHARS = 64


@dataclass(frozen=True)
class ClientLimits:
    """What the server accepts from a client (server/settings.py fills it)."""

    max_message_bytes: int = 20 * 1024 * 1024
    max_question_chars: int = 2000
    max_new_tokens: int = 512


def parse_client_frame(data: bytes | str, limits: ClientLimits, accept: tuple[str, ...] = CLIENT_TYPES) -> ClientFrame:
    """Validate one client message. ProtocolError for bad msgpack / unknown types, RequestError
    (MessageTooLarge for size) for wrong field types or values out of the server's limits."""
    if isinstance(data, str):
        raise ProtocolError("frames must be binary msgpack messages; got a text message")
    if len(data) > limits.max_message_bytes:
        raise MessageTooLarge(f"message is {len(data)} bytes; the limit is {limits.max_message_bytes}")
    f = unpack_frame(data, client_limits(limits.max_message_bytes, limits.max_question_chars))
    kind = f["type"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError(f"unknown frame type {kind!r}; expected one of {', '.join(accept)}")
    if kind not in accept:
        raise ProtocolError(f"frame type {kind!r} is not accepted here; expected one of {', '.join(accept)}")
    if kind == "start":
        return _parse_start(f, limits)
    if kind == "analyze":
        return _parse_analyze(f)
    if kind == "cancel_analysis":
        job = get_field(f, "job", str, "cancel_analysis", RequestError)
        if not 1 <= len(job) <= MAX_JOB_CHARS:
            raise RequestError(f"job must be 1..{MAX_JOB_CHARS} characters; got {len(job)}")
        return CancelAnalysisRequest(job=job)
    if kind == "seek":
        index = get_field(f, "index", int, "seek", RequestError)
        if index < 0:
            raise RequestError(f"seek index must be >= 0; got {index}")
        return SeekRequest(index=index)
    if kind == "speed":
        value = float(get_field(f, "value", float, "speed", RequestError))
        if not 0.25 <= value <= 8.0:
            raise RequestError(f"replay speed must be in 0.25..8; got {value}")
        return SpeedRequest(value=value)
    simple: dict[str, ClientFrame] = {"cancel": CancelRequest(), "pause": PauseRequest(), "resume": ResumeRequest()}
    return simple[kind]


def _optional(f: dict[str, Any], key: str, kind: Any, default: Any, where: str = "start") -> Any:
    return optional_field(f, key, kind, default, where, RequestError)


def _strings(f: dict[str, Any], key: str, where: str = "start") -> tuple[str, ...] | None:
    values = _optional(f, key, list, None, where)
    if values is not None and not all(isinstance(v, str) for v in values):
        raise RequestError(f"field '{key}' of the {where} frame must be an array of strings")
    return None if values is None else tuple(values)


def _images(f: dict[str, Any]) -> tuple[bytes, ...]:
    if "images" not in f or f["images"] is None:
        return (get_field(f, "image", bytes, "start", RequestError),)
    images = get_field(f, "images", list, "start", RequestError)
    if not 1 <= len(images) <= MAX_IMAGES:
        raise RequestError(f"field 'images' of the start frame must hold 1..{MAX_IMAGES} files; got {len(images)}")
    if not all(isinstance(image, bytes) for image in images):
        raise RequestError("field 'images' of the start frame must be an array of bytes")
    return tuple(images)


def _parse_start(f: dict[str, Any], limits: ClientLimits) -> StartRequest:
    images = _images(f)
    labels = _strings(f, "labels") or ()
    if len(labels) > len(images) or any(len(label) > MAX_LABEL_CHARS for label in labels):
        raise RequestError(f"labels must be at most one string of up to {MAX_LABEL_CHARS} characters per image; "
                           f"got {len(labels)} for {len(images)} image(s)")
    question = _optional(f, "question", str, None)
    if question is not None and len(question) > limits.max_question_chars:
        raise RequestError(f"question is {len(question)} characters; the limit is {limits.max_question_chars}")
    max_new = _optional(f, "max_new_tokens", int, min(GenerationParams.max_new_tokens, limits.max_new_tokens))
    if not 1 <= max_new <= limits.max_new_tokens:
        raise RequestError(f"max_new_tokens must be in 1..{limits.max_new_tokens}; got {max_new}")
    return StartRequest(
        image=images[0], question=question, max_new_tokens=max_new,
        temperature=float(_optional(f, "temperature", float, 0.0)),
        top_p=float(_optional(f, "top_p", float, 1.0)),
        top_k=_optional(f, "top_k", int, 0),
        repetition_penalty=float(_optional(f, "repetition_penalty", float, 1.0)),
        seed=_optional(f, "seed", int, None),
        methods=_strings(f, "methods"),
        record=_optional(f, "record", bool, False),
        images=images, labels=labels,
    )


def _parse_analyze(f: dict[str, Any]) -> AnalyzeRequest:
    kind = get_field(f, "kind", str, "analyze", RequestError)
    if kind not in ANALYSIS_KINDS:
        raise RequestError(f"analysis kind must be one of {', '.join(ANALYSIS_KINDS)}; got {kind[:40]!r}")
    index = get_field(f, "index", int, "analyze", RequestError)
    if index < 0:
        raise RequestError(f"token index must be >= 0; got {index}")
    if kind == "faithfulness":
        method = _optional(f, "method", str, "consensus", "analyze")
        if method not in (*METHODS, "gradient"):
            raise RequestError(f"faithfulness method must be one of {', '.join(METHODS)} or gradient; "
                               f"got {method[:40]!r}")
        steps = _optional(f, "steps", int, DEFAULT_FAITHFULNESS_STEPS, "analyze")
        if not 1 <= steps <= MAX_FAITHFULNESS_STEPS:
            raise RequestError(f"faithfulness steps must be in 1..{MAX_FAITHFULNESS_STEPS}; got {steps}")
        return AnalyzeRequest(kind=kind, index=index, method=method, steps=steps)
    if kind == "agreement":
        return AnalyzeRequest(kind=kind, index=index, boxes=_boxes(f))
    return AnalyzeRequest(kind=kind, index=index)


def _boxes(f: dict[str, Any]) -> tuple[BoxRequest, ...]:
    items = _optional(f, "boxes", list, [], "analyze")
    if not 1 <= len(items) <= MAX_BOXES:
        raise RequestError(f"agreement needs 1..{MAX_BOXES} boxes; got {len(items)}")
    boxes = []
    for number, item in enumerate(items):
        where = f"box {number} of the analyze"
        if not isinstance(item, dict):
            raise RequestError(f"{where} frame must be a map with label, xywh and image")
        label = get_field(item, "label", str, where, RequestError)
        xywh = get_field(item, "xywh", list, where, RequestError)
        image = optional_field(item, "image", int, 0, where, RequestError)
        valid = len(xywh) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in xywh)
        if not valid or xywh[0] < 0 or xywh[1] < 0 or xywh[2] <= 0 or xywh[3] <= 0:
            raise RequestError(f"{where} frame: xywh must be 4 integer pixels with x, y >= 0 and w, h > 0; "
                               f"got {xywh!r}"[:200])
        if not 0 <= image < MAX_IMAGES or len(label) > 64:
            raise RequestError(f"{where} frame: image must be in 0..{MAX_IMAGES - 1} and the label at most "
                               f"64 characters; got image {image}")
        boxes.append(BoxRequest(label=label, xywh=(xywh[0], xywh[1], xywh[2], xywh[3]), image=image))
    if len({b.image for b in boxes}) != 1:
        raise RequestError(f"all boxes of one agreement request must be on one image; got images "
                           f"{sorted({b.image for b in boxes})}")
    return tuple(boxes)


def encode_client_start(request: StartRequest) -> bytes:
    """The client's start frame: `image` for one file, `images` and `labels` for several."""
    files: dict[str, Any] = {"image": request.image} if len(request.images) == 1 and not request.labels else {
        "images": list(request.images), "labels": list(request.labels)}
    return pack_frame("start", {
        **files, "question": request.question, "max_new_tokens": request.max_new_tokens,
        "temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k,
        "repetition_penalty": request.repetition_penalty, "seed": request.seed,
        "methods": list(request.methods) if request.methods is not None else None, "record": request.record,
    })


def encode_analyze(request: AnalyzeRequest) -> bytes:
    fields: dict[str, Any] = {"kind": request.kind, "index": request.index}
    if request.method:
        fields["method"] = request.method
    if request.steps:
        fields["steps"] = request.steps
    if request.boxes:
        fields["boxes"] = [{"label": b.label, "xywh": list(b.xywh), "image": b.image} for b in request.boxes]
    return pack_frame("analyze", fields)


def encode_command(kind: str, **fields: Any) -> bytes:
    """A client control frame: cancel, pause, resume, seek(index=), speed(value=), cancel_analysis(job=)."""
    if kind not in CLIENT_TYPES[1:]:
        raise ValueError(f"unknown command {kind!r}; expected one of {', '.join(CLIENT_TYPES[1:])}")
    return pack_frame(kind, dict(fields))
