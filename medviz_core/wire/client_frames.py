"""Wire protocol v2, client -> server: every request a client sends, parsed and checked once.

Owns: the typed requests (`StartRequest`, `RejoinRequest`, `AnalyzeRequest` with its `BoxRequest`s,
`CancelAnalysisRequest`, and the commands `cancel`, `pause`, `resume`, `seek`, `speed`),
each with `to_wire()` for Python clients, tests and benchmarks, and `parse_client_frame`,
which turns one message into one of them or raises: ProtocolError for bytes that are not a
frame, RequestError (MessageTooLarge for size) for a field of the wrong type or out of
bounds. Everything that needs no session or model is checked here: sizes and item counts
(limits.py), sampling ranges (GenerationParams), the methods, the preset, the question and
labels (no control tokens). A start request's `ParamsRequest` holds only the sampling
parameters the client stated; the rest are the model's suggestion (`Engine.suggested`),
filled where the run starts (session_frames.py), so every path samples alike. Checks that need the
session (a token not generated yet, a method it does not compute) are the server's. Does not
own server frames (server_frames.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from medviz_core.errors import MessageTooLarge, ProtocolError, RequestError
from medviz_core.prompts import check_label, check_preset, check_question
from medviz_core.types import METHODS, GenerationParams, check_methods
from medviz_core.wire.codec import VERSION, get_field, optional_field, pack, unpack
from medviz_core.wire.limits import (
    DEFAULT_FAITHFULNESS_STEPS,
    MAX_BOX_LABEL_CHARS,
    MAX_BOXES,
    MAX_FAITHFULNESS_STEPS,
    MAX_IMAGES,
    MAX_JOB_CHARS,
    MAX_NEW_TOKENS,
    MAX_REQUEST_ID_CHARS,
    ClientLimits,
    client_limits,
)
from medviz_core.wire.results import KINDS, KindRules
from medviz_core.wire.server_frames import params_to_wire

CLIENT_TYPES = ("start", "rejoin", "cancel", "pause", "resume", "seek", "speed", "analyze", "cancel_analysis")
ANALYSIS_COMMANDS = ("analyze", "cancel_analysis")
MAX_REJOIN_CHARS = 128  # a session id or owner key in a rejoin request
MAX_UID_CHARS = 64  # a DICOM UID (PS3.5 9.1)
UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


PARAM_NAMES = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")


@dataclass(frozen=True)
class ParamsRequest:
    """The sampling parameters a start request states: None leaves one to the model's suggestion
    (`Engine.suggested`: the demo's repetition penalty 1.3, say), which `resolve` fills where the run
    starts. Stated values are checked when made, as GenerationParams checks them. `limit` is the
    server's max_new_tokens: a suggested length above it is cut to it (a stated one above it is refused
    when parsed); it is not part of the request on the wire."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    limit: int = field(default=MAX_NEW_TOKENS, compare=False)

    def __post_init__(self) -> None:
        checked = GenerationParams(**self.stated())  # RequestError naming the bound and the value
        for name in self.stated():
            object.__setattr__(self, name, getattr(checked, name))

    def stated(self) -> dict[str, Any]:
        """The fields the client gave, by name."""
        return {name: getattr(self, name) for name in PARAM_NAMES if getattr(self, name) is not None}

    def resolve(self, suggested: GenerationParams) -> GenerationParams:
        """The parameters a run uses: the stated ones, the model's suggestion for the rest."""
        length = min(suggested.max_new_tokens, self.limit)
        return replace(suggested, **{"max_new_tokens": length, **self.stated()})

    @staticmethod
    def of(params: GenerationParams) -> ParamsRequest:
        """Every field stated, as `params` has it."""
        return ParamsRequest(**{name: getattr(params, name) for name in PARAM_NAMES})

    def to_wire(self) -> dict[str, Any]:
        return {key: value for key, value in params_to_wire(self.resolve(GenerationParams())).items()
                if key in self.stated()}


@dataclass(frozen=True)
class PacsPick:
    """A study in the server's PACS to start from: its UID, optionally one series, and the chosen instances
    (1..MAX_IMAGES SOP instance UIDs, in view order), which the server retrieves itself (server/pacs/)."""

    study: str
    instances: tuple[str, ...]
    series: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"study": self.study, "series": self.series, "instances": list(self.instances)}


@dataclass(frozen=True)
class StartRequest:
    """Start a session: a study's files (one or more), their labels, what to ask and how to sample; or, with
    `pacs`, no files: the chosen instances of a study in the server's PACS (the server labels them)."""

    images: tuple[bytes, ...]
    labels: tuple[str, ...] = ()
    question: str | None = None  # None: the preset's report prompt
    preset: str | None = None  # prompts.PRESETS; None: "medviz"
    params: ParamsRequest = field(default_factory=ParamsRequest)  # what it states; the rest: the model's
    methods: tuple[str, ...] | None = None  # None: all
    record: bool = False
    pacs: PacsPick | None = None  # a study in the server's PACS instead of files
    # The server's own mark, never on the wire (to_wire leaves it out, parsing never reads it): server/pacs/start.py
    # sets it once the server itself retrieved `images` from its PACS; the source frame carries it on (from_pacs).
    from_pacs: bool = False
    type: str = "start"

    def to_wire(self) -> bytes:
        body: dict[str, Any] = {"images": list(self.images), "labels": list(self.labels), "question": self.question,
                                "prompt": self.preset, "params": self.params.to_wire(),
                                "methods": None if self.methods is None else list(self.methods), "record": self.record}
        if self.pacs is not None:
            body["pacs"] = self.pacs.to_wire()
        return pack("start", body)


@dataclass(frozen=True)
class RejoinRequest:
    """Take a live session back as its owner (a reloaded page): its id and the owner key the server gave
    the owner's socket in the `owner` frame. Sent instead of `start` as the first frame of /ws/session."""

    session: str
    key: str
    type: str = "rejoin"

    def to_wire(self) -> bytes:
        return pack("rejoin", {"session": self.session, "key": self.key})


@dataclass(frozen=True)
class CancelRequest:
    type: str = "cancel"

    def to_wire(self) -> bytes:
        return pack("cancel", {})


@dataclass(frozen=True)
class PauseRequest:
    type: str = "pause"

    def to_wire(self) -> bytes:
        return pack("pause", {})


@dataclass(frozen=True)
class ResumeRequest:
    type: str = "resume"

    def to_wire(self) -> bytes:
        return pack("resume", {})


@dataclass(frozen=True)
class SeekRequest:
    index: int  # the step index to continue from
    type: str = "seek"

    def to_wire(self) -> bytes:
        return pack("seek", {"index": self.index})


@dataclass(frozen=True)
class SpeedRequest:
    value: float  # 0.25..8
    type: str = "speed"

    def to_wire(self) -> bytes:
        return pack("speed", {"value": float(self.value)})


@dataclass(frozen=True)
class BoxRequest:
    """An annotation box in pixel coordinates of image `image` of the session."""

    label: str
    xywh: tuple[int, int, int, int]
    image: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"label": self.label, "xywh": list(self.xywh), "image": self.image}


@dataclass(frozen=True)
class AnalyzeRequest:
    """On-demand analysis of token `index`. Fields a kind does not take (results.KINDS) are normalised
    away (method "", boxes (), steps 0), so equal requests compare equal and share one job. `id` is the
    client's own, echoed in every answer."""

    kind: str
    index: int
    method: str = ""
    boxes: tuple[BoxRequest, ...] = ()
    steps: int = 0
    id: str | None = None
    type: str = "analyze"

    def to_wire(self) -> bytes:
        body: dict[str, Any] = {"kind": self.kind, "index": self.index, "id": self.id}
        if self.method:
            body["method"] = self.method
        if self.steps:
            body["steps"] = self.steps
        if self.boxes:
            body["boxes"] = [b.to_wire() for b in self.boxes]
        return pack("analyze", body)

    def without_id(self) -> AnalyzeRequest:
        """The request as a job sees it: two sockets' equal requests are one job whatever their ids."""
        return replace(self, id=None)


@dataclass(frozen=True)
class CancelAnalysisRequest:
    job: str
    id: str | None = None
    type: str = "cancel_analysis"

    def to_wire(self) -> bytes:
        return pack("cancel_analysis", {"job": self.job, "id": self.id})


ClientFrame = (StartRequest | RejoinRequest | CancelRequest | PauseRequest | ResumeRequest | SeekRequest | SpeedRequest
               | AnalyzeRequest | CancelAnalysisRequest)


def parse_client_frame(data: bytes | str, limits: ClientLimits, accept: tuple[str, ...] = CLIENT_TYPES) -> ClientFrame:
    """One client message -> its typed request, checked (see the module docstring for what raises)."""
    if isinstance(data, str):
        raise ProtocolError("frames must be binary msgpack messages; got a text message")
    if len(data) > limits.max_message_bytes:
        raise MessageTooLarge(f"message is {len(data)} bytes; the limit is {limits.max_message_bytes}")
    f = unpack(data, client_limits(limits.max_message_bytes, limits.max_question_chars), versions=(VERSION,))
    kind = f["type"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError(f"unknown frame type {kind!r}; expected one of {', '.join(accept)}")
    if kind not in accept:
        raise ProtocolError(f"frame type {kind!r} is not accepted here; expected one of {', '.join(accept)}")
    parsed: ClientFrame = _PARSERS[kind](f, limits)
    return parsed


def request_id(f: Mapping[str, Any], where: str) -> str | None:
    value: str | None = optional_field(f, "id", str, None, where, RequestError)
    if value is not None and not 1 <= len(value) <= MAX_REQUEST_ID_CHARS:
        raise RequestError(f"a request id must be 1..{MAX_REQUEST_ID_CHARS} characters; got {len(value)}")
    return value


def peek_request_id(data: bytes | str) -> str | None:
    """The `id` of a client message that failed to parse, if it can be read at all (to echo in the error)."""
    if isinstance(data, str):
        return None
    try:
        f = unpack(data, client_limits(len(data), 0), versions=(VERSION,))
        value: object = f.get("id")
    except ProtocolError:
        return None
    return value if isinstance(value, str) and 1 <= len(value) <= MAX_REQUEST_ID_CHARS else None


def _optional(f: Mapping[str, Any], key: str, kind: Any, default: Any, where: str = "start") -> Any:
    return optional_field(f, key, kind, default, where, RequestError)


def _strings(f: Mapping[str, Any], key: str, where: str = "start") -> tuple[str, ...] | None:
    values = _optional(f, key, list, None, where)
    if values is not None and not all(isinstance(v, str) for v in values):
        raise RequestError(f"field '{key}' of the {where} frame must be an array of strings")
    return None if values is None else tuple(values)


def _parse_start(f: Mapping[str, Any], limits: ClientLimits) -> StartRequest:
    images = get_field(f, "images", list, "start", RequestError)
    pacs = _pacs(_optional(f, "pacs", dict, None))
    if pacs is not None and images:
        raise RequestError(f"a start from the PACS carries no files; got {len(images)} file(s) beside field 'pacs'")
    if pacs is None and not 1 <= len(images) <= MAX_IMAGES:
        raise RequestError(f"field 'images' of the start frame must hold 1..{MAX_IMAGES} files; got {len(images)}")
    if not all(isinstance(image, bytes) for image in images):
        raise RequestError("field 'images' of the start frame must be an array of bytes")
    labels = _strings(f, "labels") or ()
    if pacs is not None and labels:
        raise RequestError("a start from the PACS takes no labels: the server labels its views from their headers")
    if len(labels) > len(images):
        raise RequestError(f"labels must be at most one per image; got {len(labels)} for {len(images)} image(s)")
    question = _optional(f, "question", str, None)
    if question is not None:
        if len(question) > limits.max_question_chars:
            raise RequestError(f"question is {len(question)} characters; the limit is {limits.max_question_chars}")
        check_question(question)
    params = _params(_optional(f, "params", dict, {}), limits)
    methods = _strings(f, "methods")
    return StartRequest(
        images=tuple(images), labels=tuple(check_label(label) for label in labels), question=question,
        preset=check_preset(_optional(f, "prompt", str, None)).name, params=params,
        methods=None if methods is None else check_methods(methods), record=_optional(f, "record", bool, False),
        pacs=pacs,
    )


def check_uid(value: str, what: str) -> str:
    """`value` if it is a DICOM UID (digits and dots, at most 64 characters); RequestError naming `what` otherwise."""
    if not 1 <= len(value) <= MAX_UID_CHARS or UID_PATTERN.fullmatch(value) is None:
        raise RequestError(f"{what} must be a DICOM UID (digits and dots, at most {MAX_UID_CHARS} characters); "
                           f"got {value[:80]!r}")
    return value


def _pacs(m: Mapping[str, Any] | None) -> PacsPick | None:
    """The start frame's `pacs` map: a study, an optional series, 1..MAX_IMAGES distinct instances, each a UID."""
    if m is None:
        return None
    where = "pacs field of the start"
    study = check_uid(get_field(m, "study", str, where, RequestError), "the PACS study")
    series = optional_field(m, "series", str, None, where, RequestError)
    instances = get_field(m, "instances", list, where, RequestError)
    if not 1 <= len(instances) <= MAX_IMAGES or not all(isinstance(i, str) for i in instances):
        raise RequestError(f"field 'instances' of the start frame's pacs field must hold 1..{MAX_IMAGES} SOP "
                           f"instance UIDs; got {len(instances)} item(s)")
    if len(set(instances)) != len(instances):
        raise RequestError("field 'instances' of the start frame's pacs field names one instance twice")
    return PacsPick(study=study, series=None if series is None else check_uid(series, "the PACS series"),
                    instances=tuple(check_uid(i, "a PACS instance") for i in instances))


def _parse_rejoin(f: Mapping[str, Any], limits: ClientLimits) -> RejoinRequest:
    session = get_field(f, "session", str, "rejoin", RequestError)
    key = get_field(f, "key", str, "rejoin", RequestError)
    if not 1 <= len(session) <= MAX_REJOIN_CHARS or not 1 <= len(key) <= MAX_REJOIN_CHARS:
        raise RequestError(f"a rejoin's session and key must be 1..{MAX_REJOIN_CHARS} characters; got "
                           f"{len(session)} and {len(key)}")
    return RejoinRequest(session=session, key=key)


def _params(m: Mapping[str, Any], limits: ClientLimits) -> ParamsRequest:
    """The params map of a start frame: absent (or nil) fields left to the model, stated ones checked."""
    def read(key: str, kind: Any) -> Any:
        return optional_field(m, key, kind, None, "start", RequestError)

    params = ParamsRequest(max_new_tokens=read("max_new_tokens", int), temperature=read("temperature", float),
                           top_p=read("top_p", float), top_k=read("top_k", int),
                           repetition_penalty=read("repetition_penalty", float), seed=read("seed", int),
                           limit=limits.max_new_tokens)
    if params.max_new_tokens is not None and params.max_new_tokens > limits.max_new_tokens:
        raise RequestError(f"max_new_tokens must be in 1..{limits.max_new_tokens}; got {params.max_new_tokens}")
    return params


def _parse_analyze(f: Mapping[str, Any], limits: ClientLimits) -> AnalyzeRequest:
    kind = get_field(f, "kind", str, "analyze", RequestError)
    rules = KINDS.get(kind)
    if rules is None:
        raise RequestError(f"analysis kind must be one of {', '.join(KINDS)}; got {kind[:40]!r}")
    index = get_field(f, "index", int, "analyze", RequestError)
    if index < 0:
        raise RequestError(f"token index must be >= 0; got {index}")
    rid = request_id(f, "analyze")
    method = _method(f, kind, rules) if rules.method else ""
    steps = _steps(f, kind) if rules.steps else 0
    boxes = _boxes(f, kind) if rules.boxes else ()
    return AnalyzeRequest(kind=kind, index=index, method=method, boxes=boxes, steps=steps, id=rid)


def _method(f: Mapping[str, Any], kind: str, rules: KindRules) -> str:
    method: str = _optional(f, "method", str, "consensus", "analyze")
    if method not in rules.methods:
        named = ", ".join(METHODS) + (" or gradient" if rules.gradient else "")
        raise RequestError(f"{kind} method must be one of {named}; got {method[:40]!r}")
    return method


def _steps(f: Mapping[str, Any], kind: str) -> int:
    steps: int = _optional(f, "steps", int, DEFAULT_FAITHFULNESS_STEPS, "analyze")
    if not 1 <= steps <= MAX_FAITHFULNESS_STEPS:
        raise RequestError(f"{kind} steps must be in 1..{MAX_FAITHFULNESS_STEPS}; got {steps}")
    return steps


def _boxes(f: Mapping[str, Any], kind: str) -> tuple[BoxRequest, ...]:
    items = _optional(f, "boxes", list, [], "analyze")
    if not 1 <= len(items) <= MAX_BOXES:
        raise RequestError(f"{kind} needs 1..{MAX_BOXES} boxes; got {len(items)}")
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
        if not 0 <= image < MAX_IMAGES or len(label) > MAX_BOX_LABEL_CHARS:
            raise RequestError(f"{where} frame: image must be in 0..{MAX_IMAGES - 1} and the label at most "
                               f"{MAX_BOX_LABEL_CHARS} characters; got image {image}")
        boxes.append(BoxRequest(label=label, xywh=(xywh[0], xywh[1], xywh[2], xywh[3]), image=image))
    if len({b.image for b in boxes}) != 1:
        raise RequestError(f"all boxes of one {kind} request must be on one image; got images "
                           f"{sorted({b.image for b in boxes})}")
    return tuple(boxes)


def _parse_cancel_analysis(f: Mapping[str, Any], limits: ClientLimits) -> CancelAnalysisRequest:
    job = get_field(f, "job", str, "cancel_analysis", RequestError)
    if not 1 <= len(job) <= MAX_JOB_CHARS:
        raise RequestError(f"job must be 1..{MAX_JOB_CHARS} characters; got {len(job)}")
    return CancelAnalysisRequest(job=job, id=request_id(f, "cancel_analysis"))


def _parse_seek(f: Mapping[str, Any], limits: ClientLimits) -> SeekRequest:
    index = get_field(f, "index", int, "seek", RequestError)
    if index < 0:
        raise RequestError(f"seek index must be >= 0; got {index}")
    return SeekRequest(index=index)


def _parse_speed(f: Mapping[str, Any], limits: ClientLimits) -> SpeedRequest:
    value = float(get_field(f, "value", float, "speed", RequestError))
    if not 0.25 <= value <= 8.0:
        raise RequestError(f"replay speed must be in 0.25..8; got {value}")
    return SpeedRequest(value=value)


_PARSERS: dict[str, Any] = {
    "start": _parse_start, "analyze": _parse_analyze, "cancel_analysis": _parse_cancel_analysis,
    "seek": _parse_seek, "speed": _parse_speed, "rejoin": _parse_rejoin,
    "cancel": lambda f, limits: CancelRequest(), "pause": lambda f, limits: PauseRequest(),
    "resume": lambda f, limits: ResumeRequest(),
}
