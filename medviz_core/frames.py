"""Wire protocol v1 (docs/protocol.md), server -> client: the Python module that knows their field names.

Owns: encoding server frames (`encode_start`, `encode_step`, `encode_end`, `encode_error`,
`encode_queued`, `encode_replay`, `encode_analysis` and its result maps), decoding them
back into the typed frames of frame_types.py (`decode`); server/requests.py validates what
clients send, on `unpack_frame`. Every message is checked against msgpack_limits.py's item
counts and lengths before it is unpacked (server frames by SERVER_LIMITS, client frames by
the limits their caller passes). Does no I/O: sockets, files and timing belong to server/ and
recording.py. Range checks that need the engine's rules (sampling bounds, method names a
session computes, image decoding) stay with the engine and imaging.

Maps travel as uint8 after min-max over each map, with `lo`/`hi` so raw values can be
recovered; step frames pack floats as float32 so a step with six 16 x 16 maps and three
regions stays under 2.5 KB (two images: under 5 KB). Other frames keep float64.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import msgpack
import numpy as np

from .errors import ProtocolError
from .msgpack_limits import SERVER_LIMITS, UnpackLimits, check_shape, unpack_kwargs
from .frame_types import (
    ANALYSIS_KINDS, ANALYSIS_STATUSES, AgreementResult, AnalysisFrame, AnalysisResult,
    AnalyzeRequest, BoxRequest, CancelAnalysisRequest, CancelRequest, ClientFrame, CurveResult, EndFrame, ErrorFrame,
    FaithfulnessResult, Frame, GradientResult, HeadsResult, ImageInfo, ImageMaps, MethodAgreement, PauseRequest,
    QuantMap, QueuedFrame, ReplayFrame, ResumeRequest, SeekRequest, SpeedRequest, StartFrame, StartRequest, StepFrame,
    describe, get_field, optional_field,
)
from .types import GenerationParams, ModelFacts, Prompt, PromptImage, Region, Step, StepStats, StreamEnd

__all__ = [
    "AgreementResult", "AnalysisFrame", "AnalysisResult", "AnalyzeRequest", "BoxRequest", "CancelAnalysisRequest",
    "CancelRequest", "ClientFrame", "CurveResult", "EndFrame", "ErrorFrame", "FaithfulnessResult",
    "Frame", "GradientResult", "HeadsResult", "ImageInfo", "ImageMaps", "MethodAgreement",
    "PauseRequest", "QuantMap", "QueuedFrame", "ReplayFrame", "ResumeRequest", "SeekRequest", "SpeedRequest",
    "StartFrame", "StartRequest", "StepFrame",
]

VERSION = 1
_U16 = np.dtype("<u2")
_SINGLE = msgpack.Packer(use_single_float=True, use_bin_type=True)
_DOUBLE = msgpack.Packer(use_single_float=False, use_bin_type=True)


# -- encoding ------------------------------------------------------------------------------


def pack_frame(frame_type: str, body: dict[str, Any], single: bool = False) -> bytes:
    packer = _SINGLE if single else _DOUBLE
    data: bytes = packer.pack({"v": VERSION, "type": frame_type, **body})
    return data


def _image_entry(image: PromptImage) -> dict[str, Any]:
    width, height = image.size
    return {"png": image.png, "width": width, "height": height, "label": image.label,
            "positions": list(image.positions)}


def encode_start(
    session: str,
    facts: ModelFacts,
    prompt: Prompt,
    methods: tuple[str, ...],
    params: GenerationParams,
    created: float,
    recording: str | None = None,
) -> bytes:
    """The first frame of a session: model facts, exact prompt, every image and parameters."""
    model = {
        "name": facts.name, "layers": facts.layers, "heads": facts.heads, "kv_heads": facts.kv_heads,
        "grid": list(facts.grid), "image_token_id": facts.image_token_id,
        "sliding_window": facts.sliding_window, "full_layers": list(facts.full_attention_layers),
        "device": facts.device, "dtype": facts.dtype,
    }
    images = prompt.images or (PromptImage("", prompt.image_png, prompt.image_size, prompt.layout.positions),)
    return pack_frame("start", {
        "session": session,
        "model": model,
        "prompt": {
            "token_ids": list(prompt.token_ids),
            "image_positions": list(prompt.layout.positions),
            "question": prompt.question,
        },
        "image": _image_entry(images[0]),
        "more": [_image_entry(image) for image in images[1:]],
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


def _focus(maps: Mapping[str, np.ndarray], stats: StepStats) -> dict[str, Any]:
    """maps, mass, ent, ent_n, peak, zone, regions: one image's part of a step."""
    return {
        "maps": {name: list(quantise(values)) for name, values in maps.items()},
        "mass": float(stats.image_mass),
        "ent": float(stats.entropy_bits),
        "ent_n": float(stats.entropy_norm),
        "peak": [int(stats.peak[0]), int(stats.peak[1])],
        "zone": stats.peak_zone,
        "regions": [
            {"poly": pack_polygon(r.polygon), "box": [float(v) for v in r.box], "mass": float(r.mass), "zone": r.zone}
            for r in stats.regions
        ],
    }


def encode_step(step: Step, t_ms: float) -> bytes:
    """One generated token with its quantised maps, statistics and regions (float32 floats).

    With several images, `shares` and `more` (images 2..k) follow; one image sends neither.
    """
    body: dict[str, Any] = {"i": step.index, "token_id": step.token_id, "text": step.text, "pos": step.position,
                            "t_ms": float(t_ms), **_focus(step.maps, step.stats),
                            "model_ms": float(step.model_ms), "maps_ms": float(step.maps_ms),
                            "seeing": int(step.layers_seeing_image), "special": bool(step.is_special)}
    if step.images:
        body["shares"] = [float(f.stats.image_mass) for f in step.images]
        body["more"] = [_focus(f.maps, f.stats) for f in step.images[1:]]
    return pack_frame("step", body, single=True)


def encode_end(end: StreamEnd) -> bytes:
    return pack_frame("end", {
        "reason": end.reason, "tokens": end.tokens, "text": end.text, "prefill_ms": float(end.prefill_ms),
        "total_ms": float(end.total_ms), "message": end.message,
        "timings": {str(k): float(v) for k, v in end.timings.items()},
    })


def encode_error(code: str, message: str) -> bytes:
    return pack_frame("error", {"code": code, "message": message})


def encode_queued(position: int) -> bytes:
    return pack_frame("queued", {"position": position})


def encode_replay(recording: str, steps: int, speed: float, paused: bool, at: int) -> bytes:
    return pack_frame("replay", {"recording": recording, "steps": steps, "speed": float(speed), "paused": paused, "at": at})


# -- analysis results ----------------------------------------------------------------------


class CurveLike(Protocol):
    """faithfulness.Curve's fields (frames.py does not import the analysis modules)."""

    @property
    def fractions(self) -> tuple[float, ...]: ...

    @property
    def scores(self) -> tuple[float, ...]: ...

    @property
    def auc(self) -> float: ...


def encode_analysis(job: str, kind: str, index: int, status: str, message: str = "",
                    result: Mapping[str, Any] | None = None) -> bytes:
    """An analysis job's state; `result` (one of the *_result maps below) when status is done."""
    return pack_frame("analysis", {"job": job, "kind": kind, "index": index, "status": status, "message": message,
                              "result": None if result is None else dict(result)})


def gradient_result(maps: np.ndarray) -> dict[str, Any]:
    """(images, gh, gw) gradient relevancy -> {maps: [[lo, hi, u8] per image]}."""
    return {"maps": [list(quantise(m)) for m in maps]}


def heads_result(maps: np.ndarray, mass: np.ndarray, entropy: np.ndarray) -> dict[str, Any]:
    """[L, H, images, gh, gw] maps and [L, H] mass / entropy -> the heads result map."""
    layers, heads = int(maps.shape[0]), int(maps.shape[1])
    flat = maps.reshape(layers * heads * int(maps.shape[2]), *maps.shape[3:])
    return {"layers": layers, "heads": heads, "maps": [list(quantise(m)) for m in flat],
            "mass": [float(v) for v in np.ravel(mass)], "entropy": [float(v) for v in np.ravel(entropy)]}


def faithfulness_result(method: str, deletion: CurveLike, insertion: CurveLike, random_deletion: CurveLike,
                        random_insertion: CurveLike) -> dict[str, Any]:
    def curve(c: CurveLike) -> dict[str, Any]:
        return {"fractions": [float(v) for v in c.fractions], "scores": [float(v) for v in c.scores],
                "auc": float(c.auc)}

    return {"method": method, "deletion": curve(deletion), "insertion": curve(insertion),
            "random_deletion": curve(random_deletion), "random_insertion": curve(random_insertion)}


def agreement_result(per_method: Mapping[str, tuple[bool, float, float]], image: int) -> dict[str, Any]:
    """method -> (pointing-game hit, IoU of the top regions, box coverage) for one image."""
    return {"per_method": {m: {"hit": bool(h), "iou": float(i), "coverage": float(c)}
                           for m, (h, i, c) in per_method.items()}, "image": image}


# -- decoding server frames ----------------------------------------------------------------


def unpack_frame(data: bytes, limits: UnpackLimits = SERVER_LIMITS) -> dict[str, Any]:
    """One msgpack map with `v` and `type`; ProtocolError past `limits` (checked before unpacking) or if malformed."""
    check_shape(data, limits)
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, **unpack_kwargs(limits))
    except msgpack.ExtraData as error:
        raise ProtocolError(f"message is more than one msgpack value: {len(error.extra)} bytes follow the first") from None
    except (ValueError, TypeError):  # FormatError, StackError, truncated input, bad UTF-8, bad map keys
        raise ProtocolError("message is not valid msgpack") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"a frame must be a msgpack map; got {describe(value)}")
    version = value.get("v", VERSION)
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported; expected {VERSION}")
    if not isinstance(value.get("type"), str):
        raise ProtocolError(f"a frame needs a string field 'type'; got {describe(value.get('type'))}")
    return value


def decode(data: bytes) -> Frame:
    """Bytes of one server frame -> its typed frame; ProtocolError if malformed."""
    f = unpack_frame(data)
    kind = f["type"]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(f"unknown frame type {kind!r}; expected one of {', '.join(_DECODERS)}")
    frame: Frame = decoder(f)
    return frame


def _decode_image(entry: object, fallback_positions: tuple[int, ...]) -> ImageInfo:
    if not isinstance(entry, dict):
        raise ProtocolError(f"an image of the start frame must be a map; got {describe(entry)}")
    positions = optional_field(entry, "positions", list, None, "start")
    return ImageInfo(
        png=get_field(entry, "png", bytes, "start"),
        size=(get_field(entry, "width", int, "start"), get_field(entry, "height", int, "start")),
        label=optional_field(entry, "label", str, "", "start"),
        positions=fallback_positions if positions is None else tuple(positions),
    )


def _decode_start(f: dict[str, Any]) -> StartFrame:
    m = get_field(f, "model", dict, "start")
    prompt = get_field(f, "prompt", dict, "start")
    p = get_field(f, "params", dict, "start")
    facts = ModelFacts(
        name=get_field(m, "name", str, "start"), layers=get_field(m, "layers", int, "start"),
        heads=get_field(m, "heads", int, "start"), kv_heads=get_field(m, "kv_heads", int, "start"),
        grid=tuple(get_field(m, "grid", list, "start")),
        image_token_id=get_field(m, "image_token_id", int, "start"),
        sliding_window=get_field(m, "sliding_window", (int, type(None)), "start"),
        full_attention_layers=tuple(get_field(m, "full_layers", list, "start")),
        device=get_field(m, "device", str, "start"), dtype=get_field(m, "dtype", str, "start"),
    )
    params = GenerationParams(
        max_new_tokens=get_field(p, "max_new_tokens", int, "start"),
        temperature=get_field(p, "temperature", float, "start"), top_p=get_field(p, "top_p", float, "start"),
        top_k=get_field(p, "top_k", int, "start"),
        repetition_penalty=get_field(p, "repetition_penalty", float, "start"),
        seed=get_field(p, "seed", (int, type(None)), "start"),
    )
    positions = tuple(get_field(prompt, "image_positions", list, "start"))
    first = _decode_image(get_field(f, "image", dict, "start"), positions)
    more = tuple(_decode_image(entry, ()) for entry in optional_field(f, "more", list, [], "start"))
    return StartFrame(
        session=get_field(f, "session", str, "start"), model=facts,
        token_ids=tuple(get_field(prompt, "token_ids", list, "start")), image_positions=positions,
        question=get_field(prompt, "question", (str, type(None)), "start"),
        image_png=first.png, image_size=first.size,
        methods=tuple(get_field(f, "methods", list, "start")), params=params,
        created=float(get_field(f, "created", float, "start")),
        recording=f.get("recording") if isinstance(f.get("recording"), str) else None,
        images=(first, *more),
    )


def _decode_map(method: str, entry: object) -> QuantMap:
    if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], bytes)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry[:2])):
        raise ProtocolError(f"map '{method}' must be [lo, hi, bytes]; got {describe(entry)}")
    return QuantMap(lo=float(entry[0]), hi=float(entry[1]), u8=entry[2])


def _decode_region(r: object) -> Region:
    if not isinstance(r, dict):
        raise ProtocolError(f"a region must be a map; got {describe(r)}")
    box = tuple(float(v) for v in get_field(r, "box", list, "region"))
    if len(box) != 4:
        raise ProtocolError(f"a region box must be [x, y, w, h]; got {len(box)} numbers")
    return Region(
        polygon=unpack_polygon(get_field(r, "poly", bytes, "region")), box=box,
        mass=float(get_field(r, "mass", float, "region")), zone=get_field(r, "zone", str, "region"),
    )


def _decode_focus(f: Mapping[str, Any]) -> ImageMaps:
    peak = get_field(f, "peak", list, "step")
    stats = StepStats(
        image_mass=float(get_field(f, "mass", float, "step")), entropy_bits=float(get_field(f, "ent", float, "step")),
        entropy_norm=float(get_field(f, "ent_n", float, "step")), peak=(int(peak[0]), int(peak[1])),
        peak_zone=get_field(f, "zone", str, "step"),
        regions=tuple(_decode_region(r) for r in get_field(f, "regions", list, "step")),
    )
    return ImageMaps({k: _decode_map(k, v) for k, v in get_field(f, "maps", dict, "step").items()}, stats)


def _decode_step(f: dict[str, Any]) -> StepFrame:
    first = _decode_focus(f)
    more = []
    for entry in optional_field(f, "more", list, [], "step"):
        if not isinstance(entry, dict):
            raise ProtocolError(f"an image of the step frame must be a map; got {describe(entry)}")
        more.append(_decode_focus(entry))
    return StepFrame(
        index=get_field(f, "i", int, "step"), token_id=get_field(f, "token_id", int, "step"),
        text=get_field(f, "text", str, "step"), position=get_field(f, "pos", int, "step"),
        t_ms=float(get_field(f, "t_ms", float, "step")), maps=first.maps, stats=first.stats,
        model_ms=float(get_field(f, "model_ms", float, "step")),
        maps_ms=float(get_field(f, "maps_ms", float, "step")), layers_seeing_image=get_field(f, "seeing", int, "step"),
        is_special=get_field(f, "special", bool, "step"),
        shares=tuple(float(v) for v in optional_field(f, "shares", list, [], "step")), more=tuple(more),
    )


def _decode_end(f: dict[str, Any]) -> EndFrame:
    return EndFrame(
        reason=get_field(f, "reason", str, "end"), tokens=get_field(f, "tokens", int, "end"),
        text=get_field(f, "text", str, "end"), prefill_ms=float(get_field(f, "prefill_ms", float, "end")),
        total_ms=float(get_field(f, "total_ms", float, "end")), message=get_field(f, "message", str, "end"),
        timings={str(k): float(v) for k, v in get_field(f, "timings", dict, "end").items()},
    )


def _floats(m: Mapping[str, Any], key: str) -> tuple[float, ...]:
    return tuple(float(v) for v in get_field(m, key, list, "analysis"))


def _decode_curve(m: Mapping[str, Any], key: str) -> CurveResult:
    c = get_field(m, key, dict, "analysis")
    return CurveResult(_floats(c, "fractions"), _floats(c, "scores"), float(get_field(c, "auc", float, "analysis")))


def _decode_result(kind: str, r: Mapping[str, Any]) -> AnalysisResult:
    maps = tuple(_decode_map(kind, m) for m in r.get("maps", [])) if isinstance(r.get("maps"), list) else ()
    if kind == "gradient":
        get_field(r, "maps", list, "analysis")
        return GradientResult(maps)
    if kind == "heads":
        return HeadsResult(get_field(r, "layers", int, "analysis"), get_field(r, "heads", int, "analysis"),
                           maps, _floats(r, "mass"), _floats(r, "entropy"))
    if kind == "faithfulness":
        curves = [_decode_curve(r, k) for k in ("deletion", "insertion", "random_deletion", "random_insertion")]
        return FaithfulnessResult(get_field(r, "method", str, "analysis"), *curves)
    scores = {}
    for method, s in get_field(r, "per_method", dict, "analysis").items():
        if not isinstance(s, dict):
            raise ProtocolError(f"agreement of '{method}' must be a map; got {describe(s)}")
        scores[method] = MethodAgreement(get_field(s, "hit", bool, "analysis"),
                                         float(get_field(s, "iou", float, "analysis")),
                                         float(get_field(s, "coverage", float, "analysis")))
    return AgreementResult(scores, get_field(r, "image", int, "analysis"))


def _decode_analysis(f: dict[str, Any]) -> AnalysisFrame:
    kind = get_field(f, "kind", str, "analysis")
    status = get_field(f, "status", str, "analysis")
    if kind not in ANALYSIS_KINDS or status not in ANALYSIS_STATUSES:
        raise ProtocolError(f"analysis kind {kind!r} / status {status!r} is not one the protocol knows")
    result = get_field(f, "result", (dict, type(None)), "analysis")
    return AnalysisFrame(
        job=get_field(f, "job", str, "analysis"), kind=kind, index=get_field(f, "index", int, "analysis"),
        status=status, message=get_field(f, "message", str, "analysis"),
        result=None if result is None else _decode_result(kind, result),
    )


_DECODERS: dict[str, Any] = {
    "start": _decode_start,
    "step": _decode_step,
    "end": _decode_end,
    "error": lambda f: ErrorFrame(code=get_field(f, "code", str, "error"),
                                  message=get_field(f, "message", str, "error")),
    "queued": lambda f: QueuedFrame(position=get_field(f, "position", int, "queued")),
    "replay": lambda f: ReplayFrame(
        recording=get_field(f, "recording", str, "replay"), steps=get_field(f, "steps", int, "replay"),
        speed=float(get_field(f, "speed", float, "replay")), paused=get_field(f, "paused", bool, "replay"),
        at=get_field(f, "at", int, "replay"),
    ),
    "analysis": _decode_analysis,
}
