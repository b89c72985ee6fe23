"""Wire protocol v1 (docs/protocol.md): the ONLY Python module that knows msgpack field names.

Owns: encoding server frames (`encode_start`, `encode_step`, `encode_end`, `encode_error`,
`encode_queued`, `encode_replay`), decoding them back into typed frames (`decode`), and
validating what clients send (`parse_client_frame`). Does no I/O: sockets, files and
timing belong to server/ and recording.py. Range checks that need the engine's rules
(sampling bounds, method names, image decoding) stay with the engine and imaging.

Maps travel as uint8 after min-max over each map, with `lo`/`hi` so raw values can be
recovered; step frames pack floats as float32 so a step with six 16 x 16 maps and three
regions stays under 2.5 KB. Start/end frames keep float64 (`created` is a unix time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

import msgpack
import numpy as np

from .errors import ProtocolError, RequestError
from .types import GenerationParams, ModelFacts, Prompt, Region, Step, StepStats, StreamEnd

VERSION = 1
_U16 = np.dtype("<u2")
_SINGLE = msgpack.Packer(use_single_float=True, use_bin_type=True)
_DOUBLE = msgpack.Packer(use_single_float=False, use_bin_type=True)


class MessageTooLarge(RequestError):
    """A client message over the server's size limit."""

    code = "too_large"


@dataclass(frozen=True)
class ClientLimits:
    """What the server accepts from a client (server/settings.py fills it)."""

    max_message_bytes: int = 20 * 1024 * 1024
    max_question_chars: int = 2000
    max_new_tokens: int = 512


# -- typed frames --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantMap:
    """A map as it travels: raster uint8 bytes and the float range they span."""

    lo: float
    hi: float
    u8: bytes

    def values(self, grid: tuple[int, int]) -> np.ndarray:
        """The raw values back (to within half a quantisation step), shape `grid`."""
        u8 = np.frombuffer(self.u8, dtype=np.uint8).astype(np.float32)
        return (self.lo + u8 / 255.0 * (self.hi - self.lo)).astype(np.float32).reshape(grid)


@dataclass(frozen=True)
class StartFrame:
    session: str
    model: ModelFacts
    token_ids: tuple[int, ...]
    image_positions: tuple[int, ...]
    question: str | None
    image_png: bytes
    image_size: tuple[int, int]  # (width, height)
    methods: tuple[str, ...]
    params: GenerationParams
    created: float
    recording: str | None = None
    type: str = "start"


@dataclass(frozen=True)
class StepFrame:
    index: int
    token_id: int
    text: str
    position: int
    t_ms: float
    maps: Mapping[str, QuantMap]
    stats: StepStats
    model_ms: float
    maps_ms: float
    layers_seeing_image: int
    is_special: bool
    type: str = "step"


@dataclass(frozen=True)
class EndFrame:
    reason: str
    tokens: int
    text: str
    prefill_ms: float
    total_ms: float
    message: str
    timings: Mapping[str, float]
    type: str = "end"


@dataclass(frozen=True)
class ErrorFrame:
    code: str
    message: str
    type: str = "error"


@dataclass(frozen=True)
class QueuedFrame:
    position: int
    type: str = "queued"


@dataclass(frozen=True)
class ReplayFrame:
    recording: str
    steps: int
    speed: float
    paused: bool
    at: int
    type: str = "replay"


Frame = Union[StartFrame, StepFrame, EndFrame, ErrorFrame, QueuedFrame, ReplayFrame]


@dataclass(frozen=True)
class StartRequest:
    """A client's request to start a session, types checked against ClientLimits."""

    image: bytes
    question: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    methods: tuple[str, ...] | None = None
    record: bool = False
    type: str = "start"


@dataclass(frozen=True)
class CancelRequest:
    type: str = "cancel"


@dataclass(frozen=True)
class PauseRequest:
    type: str = "pause"


@dataclass(frozen=True)
class ResumeRequest:
    type: str = "resume"


@dataclass(frozen=True)
class SeekRequest:
    index: int
    type: str = "seek"


@dataclass(frozen=True)
class SpeedRequest:
    value: float
    type: str = "speed"


ClientFrame = Union[StartRequest, CancelRequest, PauseRequest, ResumeRequest, SeekRequest, SpeedRequest]



# -- encoding ------------------------------------------------------------------------------


def _pack(frame_type: str, body: dict[str, Any], single: bool = False) -> bytes:
    packer = _SINGLE if single else _DOUBLE
    data: bytes = packer.pack({"v": VERSION, "type": frame_type, **body})
    return data


def encode_start(
    session: str,
    facts: ModelFacts,
    prompt: Prompt,
    methods: tuple[str, ...],
    params: GenerationParams,
    created: float,
    recording: str | None = None,
) -> bytes:
    """The first frame of a session: model facts, exact prompt, image and parameters."""
    model = {
        "name": facts.name, "layers": facts.layers, "heads": facts.heads, "kv_heads": facts.kv_heads,
        "grid": list(facts.grid), "image_token_id": facts.image_token_id,
        "sliding_window": facts.sliding_window, "full_layers": list(facts.full_attention_layers),
        "device": facts.device, "dtype": facts.dtype,
    }
    width, height = prompt.image_size
    return _pack("start", {
        "session": session,
        "model": model,
        "prompt": {
            "token_ids": list(prompt.token_ids),
            "image_positions": list(prompt.layout.positions),
            "question": prompt.question,
        },
        "image": {"png": prompt.image_png, "width": width, "height": height},
        "methods": list(methods),
        "params": {
            "max_new_tokens": params.max_new_tokens, "temperature": params.temperature,
            "top_p": params.top_p, "top_k": params.top_k,
            "repetition_penalty": params.repetition_penalty, "seed": params.seed,
        },
        "created": float(created),
        "recording": recording,
    })


def quantise(values: np.ndarray) -> tuple[float, float, bytes]:
    """Min-max a map to uint8: (lo, hi, raster bytes); all zero when the map is flat.

    lo and hi are rounded to float32 first, as they travel, so decoding recovers the map
    to within half a quantisation step. Non-finite values count as `lo`.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(flat)
    if not finite.any():
        return 0.0, 0.0, bytes(flat.size)
    lo = float(np.float32(flat[finite].min()))
    hi = float(np.float32(flat[finite].max()))
    if hi <= lo:
        return lo, lo, bytes(flat.size)
    scaled = np.where(finite, (flat - lo) / (hi - lo), 0.0)
    return lo, hi, np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes()


def pack_polygon(polygon: tuple[tuple[float, float], ...]) -> bytes:
    """Normalised (x, y) vertices -> uint16 little-endian pairs (value / 65535 of the side)."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    return np.rint(np.clip(points, 0.0, 1.0) * 65535.0).astype(_U16).tobytes()


def unpack_polygon(data: bytes) -> tuple[tuple[float, float], ...]:
    if len(data) % 4:
        raise ProtocolError(f"a region polygon must be whole (x, y) uint16 pairs; got {len(data)} bytes")
    points = np.frombuffer(data, dtype=_U16).reshape(-1, 2).astype(np.float64) / 65535.0
    return tuple((float(x), float(y)) for x, y in points)


def encode_step(step: Step, t_ms: float) -> bytes:
    """One generated token with its quantised maps, statistics and regions (float32 floats)."""
    stats = step.stats
    return _pack("step", {
        "i": step.index,
        "token_id": step.token_id,
        "text": step.text,
        "pos": step.position,
        "t_ms": float(t_ms),
        "maps": {name: list(quantise(values)) for name, values in step.maps.items()},
        "mass": float(stats.image_mass),
        "ent": float(stats.entropy_bits),
        "ent_n": float(stats.entropy_norm),
        "peak": [int(stats.peak[0]), int(stats.peak[1])],
        "zone": stats.peak_zone,
        "regions": [
            {"poly": pack_polygon(r.polygon), "box": [float(v) for v in r.box], "mass": float(r.mass), "zone": r.zone}
            for r in stats.regions
        ],
        "model_ms": float(step.model_ms),
        "maps_ms": float(step.maps_ms),
        "seeing": int(step.layers_seeing_image),
        "special": bool(step.is_special),
    }, single=True)


def encode_end(end: StreamEnd) -> bytes:
    return _pack("end", {
        "reason": end.reason, "tokens": end.tokens, "text": end.text, "prefill_ms": float(end.prefill_ms),
        "total_ms": float(end.total_ms), "message": end.message,
        "timings": {str(k): float(v) for k, v in end.timings.items()},
    })


def encode_error(code: str, message: str) -> bytes:
    return _pack("error", {"code": code, "message": message})


def encode_queued(position: int) -> bytes:
    return _pack("queued", {"position": position})


def encode_replay(recording: str, steps: int, speed: float, paused: bool, at: int) -> bytes:
    return _pack("replay", {"recording": recording, "steps": steps, "speed": float(speed), "paused": paused, "at": at})


# -- field access shared by both directions ------------------------------------------------

_Kind = Union[type, tuple[type, ...]]
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", bytes: "bytes",
          list: "an array", dict: "a map", type(None): "nil"}


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return _NAMES.get(type(value), type(value).__name__)


def _expected(kind: _Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def _get(m: Mapping[str, Any], key: str, kind: _Kind, where: str, error: type[Exception] = ProtocolError) -> Any:
    if key not in m:
        raise error(f"{where} frame is missing field '{key}'")
    value = m[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    is_bool = isinstance(value, bool)
    ok = isinstance(value, kinds) and (not is_bool or bool in kinds)
    if float in kinds and isinstance(value, int) and not is_bool:
        ok = True
    if not ok:
        raise error(f"field '{key}' of the {where} frame must be {_expected(kind)}; got {_describe(value)}")
    return value


def _unpack(data: bytes) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData as error:
        raise ProtocolError(f"message is more than one msgpack value: {len(error.extra)} bytes follow the first") from None
    except (ValueError, TypeError):  # FormatError, StackError, truncated input, bad UTF-8, bad map keys
        raise ProtocolError("message is not valid msgpack") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"a frame must be a msgpack map; got {_describe(value)}")
    version = value.get("v", VERSION)
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported; expected {VERSION}")
    if not isinstance(value.get("type"), str):
        raise ProtocolError(f"a frame needs a string field 'type'; got {_describe(value.get('type'))}")
    return value


# -- decoding server frames ----------------------------------------------------------------


def decode(data: bytes) -> Frame:
    """Bytes of one server frame -> its typed frame; ProtocolError if malformed."""
    f = _unpack(data)
    kind = f["type"]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(f"unknown frame type {kind!r}; expected one of {', '.join(_DECODERS)}")
    frame: Frame = decoder(f)
    return frame


def _decode_start(f: dict[str, Any]) -> StartFrame:
    m = _get(f, "model", dict, "start")
    prompt = _get(f, "prompt", dict, "start")
    image = _get(f, "image", dict, "start")
    p = _get(f, "params", dict, "start")
    facts = ModelFacts(
        name=_get(m, "name", str, "start"), layers=_get(m, "layers", int, "start"),
        heads=_get(m, "heads", int, "start"), kv_heads=_get(m, "kv_heads", int, "start"),
        grid=tuple(_get(m, "grid", list, "start")),
        image_token_id=_get(m, "image_token_id", int, "start"),
        sliding_window=_get(m, "sliding_window", (int, type(None)), "start"),
        full_attention_layers=tuple(_get(m, "full_layers", list, "start")),
        device=_get(m, "device", str, "start"), dtype=_get(m, "dtype", str, "start"),
    )
    params = GenerationParams(
        max_new_tokens=_get(p, "max_new_tokens", int, "start"), temperature=_get(p, "temperature", float, "start"),
        top_p=_get(p, "top_p", float, "start"), top_k=_get(p, "top_k", int, "start"),
        repetition_penalty=_get(p, "repetition_penalty", float, "start"),
        seed=_get(p, "seed", (int, type(None)), "start"),
    )
    return StartFrame(
        session=_get(f, "session", str, "start"), model=facts,
        token_ids=tuple(_get(prompt, "token_ids", list, "start")),
        image_positions=tuple(_get(prompt, "image_positions", list, "start")),
        question=_get(prompt, "question", (str, type(None)), "start"),
        image_png=_get(image, "png", bytes, "start"),
        image_size=(_get(image, "width", int, "start"), _get(image, "height", int, "start")),
        methods=tuple(_get(f, "methods", list, "start")), params=params,
        created=float(_get(f, "created", float, "start")),
        recording=f.get("recording") if isinstance(f.get("recording"), str) else None,
    )


def _decode_map(method: str, entry: object) -> QuantMap:
    if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], bytes)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry[:2])):
        raise ProtocolError(f"map '{method}' must be [lo, hi, bytes]; got {_describe(entry)}")
    return QuantMap(lo=float(entry[0]), hi=float(entry[1]), u8=entry[2])


def _decode_region(r: object) -> Region:
    if not isinstance(r, dict):
        raise ProtocolError(f"a region must be a map; got {_describe(r)}")
    box = tuple(float(v) for v in _get(r, "box", list, "region"))
    if len(box) != 4:
        raise ProtocolError(f"a region box must be [x, y, w, h]; got {len(box)} numbers")
    return Region(
        polygon=unpack_polygon(_get(r, "poly", bytes, "region")), box=box,
        mass=float(_get(r, "mass", float, "region")), zone=_get(r, "zone", str, "region"),
    )


def _decode_step(f: dict[str, Any]) -> StepFrame:
    peak = _get(f, "peak", list, "step")
    stats = StepStats(
        image_mass=float(_get(f, "mass", float, "step")), entropy_bits=float(_get(f, "ent", float, "step")),
        entropy_norm=float(_get(f, "ent_n", float, "step")), peak=(int(peak[0]), int(peak[1])),
        peak_zone=_get(f, "zone", str, "step"),
        regions=tuple(_decode_region(r) for r in _get(f, "regions", list, "step")),
    )
    return StepFrame(
        index=_get(f, "i", int, "step"), token_id=_get(f, "token_id", int, "step"),
        text=_get(f, "text", str, "step"), position=_get(f, "pos", int, "step"),
        t_ms=float(_get(f, "t_ms", float, "step")),
        maps={k: _decode_map(k, v) for k, v in _get(f, "maps", dict, "step").items()},
        stats=stats, model_ms=float(_get(f, "model_ms", float, "step")),
        maps_ms=float(_get(f, "maps_ms", float, "step")), layers_seeing_image=_get(f, "seeing", int, "step"),
        is_special=_get(f, "special", bool, "step"),
    )


def _decode_end(f: dict[str, Any]) -> EndFrame:
    return EndFrame(
        reason=_get(f, "reason", str, "end"), tokens=_get(f, "tokens", int, "end"), text=_get(f, "text", str, "end"),
        prefill_ms=float(_get(f, "prefill_ms", float, "end")), total_ms=float(_get(f, "total_ms", float, "end")),
        message=_get(f, "message", str, "end"),
        timings={str(k): float(v) for k, v in _get(f, "timings", dict, "end").items()},
    )


_DECODERS: dict[str, Any] = {
    "start": _decode_start,
    "step": _decode_step,
    "end": _decode_end,
    "error": lambda f: ErrorFrame(code=_get(f, "code", str, "error"), message=_get(f, "message", str, "error")),
    "queued": lambda f: QueuedFrame(position=_get(f, "position", int, "queued")),
    "replay": lambda f: ReplayFrame(
        recording=_get(f, "recording", str, "replay"), steps=_get(f, "steps", int, "replay"),
        speed=float(_get(f, "speed", float, "replay")), paused=_get(f, "paused", bool, "replay"),
        at=_get(f, "at", int, "replay"),
    ),
}


# -- parsing client frames -----------------------------------------------------------------

CLIENT_TYPES = ("start", "cancel", "pause", "resume", "seek", "speed")


def parse_client_frame(data: bytes | str, limits: ClientLimits, accept: tuple[str, ...] = CLIENT_TYPES) -> ClientFrame:
    """Validate one client message. ProtocolError for bad msgpack / unknown types, RequestError
    (MessageTooLarge for size) for wrong field types or values out of the server's limits."""
    if isinstance(data, str):
        raise ProtocolError("frames must be binary msgpack messages; got a text message")
    if len(data) > limits.max_message_bytes:
        raise MessageTooLarge(f"message is {len(data)} bytes; the limit is {limits.max_message_bytes}")
    f = _unpack(data)
    kind = f["type"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError(f"unknown frame type {kind!r}; expected one of {', '.join(accept)}")
    if kind not in accept:
        raise ProtocolError(f"frame type {kind!r} is not accepted here; expected one of {', '.join(accept)}")
    if kind == "start":
        return _parse_start(f, limits)
    if kind == "seek":
        index = _get(f, "index", int, "seek", RequestError)
        if index < 0:
            raise RequestError(f"seek index must be >= 0; got {index}")
        return SeekRequest(index=index)
    if kind == "speed":
        value = float(_get(f, "value", float, "speed", RequestError))
        if not 0.25 <= value <= 8.0:
            raise RequestError(f"replay speed must be in 0.25..8; got {value}")
        return SpeedRequest(value=value)
    simple: dict[str, ClientFrame] = {"cancel": CancelRequest(), "pause": PauseRequest(), "resume": ResumeRequest()}
    return simple[kind]


def _optional(f: dict[str, Any], key: str, kind: _Kind, default: Any) -> Any:
    if key not in f or (f[key] is None and default is None):
        return default
    return _get(f, key, kind, "start", RequestError)


def _parse_start(f: dict[str, Any], limits: ClientLimits) -> StartRequest:
    image = _get(f, "image", bytes, "start", RequestError)
    question = _optional(f, "question", str, None)
    if question is not None and len(question) > limits.max_question_chars:
        raise RequestError(f"question is {len(question)} characters; the limit is {limits.max_question_chars}")
    max_new = _optional(f, "max_new_tokens", int, min(GenerationParams.max_new_tokens, limits.max_new_tokens))
    if not 1 <= max_new <= limits.max_new_tokens:
        raise RequestError(f"max_new_tokens must be in 1..{limits.max_new_tokens}; got {max_new}")
    methods = _optional(f, "methods", list, None)
    if methods is not None and not all(isinstance(m, str) for m in methods):
        raise RequestError("field 'methods' of the start frame must be an array of strings")
    return StartRequest(
        image=image, question=question, max_new_tokens=max_new,
        temperature=float(_optional(f, "temperature", float, 0.0)),
        top_p=float(_optional(f, "top_p", float, 1.0)),
        top_k=_optional(f, "top_k", int, 0),
        repetition_penalty=float(_optional(f, "repetition_penalty", float, 1.0)),
        seed=_optional(f, "seed", int, None),
        methods=tuple(methods) if methods is not None else None,
        record=_optional(f, "record", bool, False),
    )


def encode_client_start(request: StartRequest) -> bytes:
    """The client's start frame (used by the Python client, tests and benchmarks)."""
    return _pack("start", {
        "image": request.image, "question": request.question, "max_new_tokens": request.max_new_tokens,
        "temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k,
        "repetition_penalty": request.repetition_penalty, "seed": request.seed,
        "methods": list(request.methods) if request.methods is not None else None, "record": request.record,
    })


def encode_command(kind: str, **fields: Any) -> bytes:
    """A client control frame: cancel, pause, resume, seek(index=), speed(value=)."""
    if kind not in CLIENT_TYPES[1:]:
        raise ValueError(f"unknown command {kind!r}; expected one of {', '.join(CLIENT_TYPES[1:])}")
    return _pack(kind, dict(fields))
