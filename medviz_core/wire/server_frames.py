"""Wire protocol v2, server -> client: every frame a server sends, as typed values with their field names.

Owns: the frames `start`, `step`, `end`, `error`, `queued`, `replay`, the owner-only `owner`
and the recording-only `source` (`analysis` is in results.py), each a frozen dataclass with `to_wire()` (bytes)
and `from_wire(map)`; `StartFrame.of_run` and `StepFrame.of_step`, the one place an engine
value becomes a frame; and `decode`, bytes -> typed frame, which reads version 1 too
(v1.py upgrades it). Step frames pack floats as float32 (a step with six 16 x 16 maps
stays under 2.5 KB); other frames keep float64. Does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medviz_core.errors import ProtocolError
from medviz_core.types import (
    ContextLink,
    GenerationParams,
    ModelFacts,
    Prompt,
    Region,
    Step,
    StepStats,
    StreamEnd,
    is_stand_in,
)
from medviz_core.wire.codec import (
    VERSION,
    QuantMap,
    check_version,
    describe,
    get_field,
    maps_of,
    optional_field,
    pack,
    pack_polygon,
    peek_fields,
    unpack,
    unpack_polygon,
)
from medviz_core.wire.codes import ErrorCode
from medviz_core.wire.results import AnalysisFrame

_NIL_INT = (int, type(None))
_NIL_STR = (str, type(None))


# -- start ---------------------------------------------------------------------------------


def facts_to_wire(facts: ModelFacts) -> dict[str, Any]:
    return {"name": facts.name, "layers": facts.layers, "heads": facts.heads, "kv_heads": facts.kv_heads,
            "grid": list(facts.grid), "image_token_id": facts.image_token_id,
            "sliding_window": facts.sliding_window, "full_layers": list(facts.full_attention_layers),
            "device": facts.device, "dtype": facts.dtype, "stand_in": facts.stand_in}


def facts_from_wire(m: Mapping[str, Any]) -> ModelFacts:
    """`stand_in` is optional: recordings made before it read it off the name (`is_stand_in`)."""
    name = get_field(m, "name", str, "start")
    return ModelFacts(
        name=name, layers=get_field(m, "layers", int, "start"),
        heads=get_field(m, "heads", int, "start"), kv_heads=get_field(m, "kv_heads", int, "start"),
        grid=tuple(get_field(m, "grid", list, "start")), image_token_id=get_field(m, "image_token_id", int, "start"),
        sliding_window=get_field(m, "sliding_window", _NIL_INT, "start"),
        full_attention_layers=tuple(get_field(m, "full_layers", list, "start")),
        device=get_field(m, "device", str, "start"), dtype=get_field(m, "dtype", str, "start"),
        stand_in=optional_field(m, "stand_in", bool, is_stand_in(name), "start"),
    )


def params_to_wire(params: GenerationParams) -> dict[str, Any]:
    return {"max_new_tokens": params.max_new_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "top_k": params.top_k, "repetition_penalty": params.repetition_penalty, "seed": params.seed}


DEFAULT_PARAMS = GenerationParams()


def params_from_wire(m: Mapping[str, Any], where: str, error: type[Exception] = ProtocolError,
                     defaults: GenerationParams = DEFAULT_PARAMS) -> GenerationParams:
    """A params map; absent fields take `defaults` (client frames); RequestError from the range checks."""
    def read(key: str, kind: Any) -> Any:
        return optional_field(m, key, kind, getattr(defaults, key), where, error)

    return GenerationParams(
        max_new_tokens=read("max_new_tokens", int), temperature=read("temperature", float),
        top_p=read("top_p", float), top_k=read("top_k", int),
        repetition_penalty=read("repetition_penalty", float), seed=optional_field(m, "seed", int, None, where, error),
    )


@dataclass(frozen=True)
class ImageInfo:
    """One image of a session: the picture exactly as it went into the processor, and where its tokens are."""

    png: bytes
    size: tuple[int, int]  # (width, height)
    label: str
    positions: tuple[int, ...]  # its image-token positions

    def to_wire(self) -> dict[str, Any]:
        return {"png": self.png, "width": self.size[0], "height": self.size[1], "label": self.label,
                "positions": list(self.positions)}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> ImageInfo:
        return ImageInfo(png=get_field(m, "png", bytes, "start"),
                         size=(get_field(m, "width", int, "start"), get_field(m, "height", int, "start")),
                         label=get_field(m, "label", str, "start"),
                         positions=tuple(get_field(m, "positions", list, "start")))


@dataclass(frozen=True)
class StartFrame:
    """The first frame of a session: the model, the exact prompt, every image, what is computed and how."""

    session: str
    model: ModelFacts
    token_ids: tuple[int, ...]
    token_texts: tuple[str, ...]  # each prompt position's text ("" for image tokens); () in upgraded v1 frames
    image_positions: tuple[int, ...]  # every image's block, in prompt order
    question: str | None  # None: the preset's report prompt
    preset: str
    images: tuple[ImageInfo, ...]
    methods: tuple[str, ...]
    params: GenerationParams
    created: float  # unix time; a step was encoded at created + t_ms / 1000
    recording: str | None = None
    primer: str = ""  # the answer's first words as the template primed them ("Findings: The" on demo); "" none
    type: str = "start"

    @staticmethod
    def of_run(session: str, facts: ModelFacts, prompt: Prompt, methods: tuple[str, ...],
               params: GenerationParams, created: float, recording: str | None = None) -> StartFrame:
        images = tuple(ImageInfo(i.png, i.size, i.label, i.positions) for i in prompt.images)
        return StartFrame(session=session, model=facts, token_ids=prompt.token_ids, token_texts=prompt.token_texts,
                          image_positions=prompt.layout.positions, question=prompt.question, preset=prompt.preset,
                          images=images, methods=methods, params=params, created=created, recording=recording,
                          primer=prompt.primer)

    def to_wire(self) -> bytes:
        return pack("start", {
            "session": self.session, "model": facts_to_wire(self.model),
            "prompt": {"token_ids": list(self.token_ids), "tokens": list(self.token_texts),
                       "image_positions": list(self.image_positions), "question": self.question,
                       "preset": self.preset, **({"primer": self.primer} if self.primer else {})},
            "images": [image.to_wire() for image in self.images], "methods": list(self.methods),
            "params": params_to_wire(self.params), "created": float(self.created), "recording": self.recording,
        })

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> StartFrame:
        prompt = get_field(f, "prompt", dict, "start")
        images = tuple(ImageInfo.from_wire(m) for m in maps_of(f, "images", "start"))
        if not images:
            raise ProtocolError("a start frame holds at least one image; got none")
        return StartFrame(
            session=get_field(f, "session", str, "start"), model=facts_from_wire(get_field(f, "model", dict, "start")),
            token_ids=tuple(get_field(prompt, "token_ids", list, "start")),
            token_texts=tuple(optional_field(prompt, "tokens", list, [], "start")),
            image_positions=tuple(get_field(prompt, "image_positions", list, "start")),
            question=get_field(prompt, "question", _NIL_STR, "start"),
            preset=optional_field(prompt, "preset", str, "medviz", "start"),
            images=images, methods=tuple(get_field(f, "methods", list, "start")),
            params=params_from_wire(get_field(f, "params", dict, "start"), "start"),
            created=float(get_field(f, "created", float, "start")),
            recording=optional_field(f, "recording", str, None, "start"),
            primer=optional_field(prompt, "primer", str, "", "start"),
        )


# -- step ----------------------------------------------------------------------------------


def _region_to_wire(r: Region) -> dict[str, Any]:
    return {"poly": pack_polygon(r.polygon), "box": [float(v) for v in r.box], "mass": float(r.mass), "zone": r.zone}


def _region_from_wire(r: object) -> Region:
    if not isinstance(r, dict):
        raise ProtocolError(f"a region must be a map; got {describe(r)}")
    box = tuple(float(v) for v in get_field(r, "box", list, "region"))
    if len(box) != 4:
        raise ProtocolError(f"a region box must be [x, y, w, h]; got {len(box)} numbers")
    return Region(polygon=unpack_polygon(get_field(r, "poly", bytes, "region")), box=(box[0], box[1], box[2], box[3]),
                  mass=float(get_field(r, "mass", float, "region")), zone=get_field(r, "zone", str, "region"))


@dataclass(frozen=True)
class ImageMaps:
    """One image's part of a step: its quantised maps, its share of the attention and its statistics."""

    maps: Mapping[str, QuantMap]
    share: float
    stats: StepStats

    def values(self, method: str, grid: tuple[int, int]) -> np.ndarray:
        return self.maps[method].values(grid)

    def to_wire(self) -> dict[str, Any]:
        s = self.stats
        return {"maps": {name: q.to_wire() for name, q in self.maps.items()}, "share": float(self.share),
                "ent": float(s.entropy_bits), "ent_n": float(s.entropy_norm), "peak": [int(s.peak[0]), int(s.peak[1])],
                "zone": s.peak_zone, "regions": [_region_to_wire(r) for r in s.regions]}

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> ImageMaps:
        peak = get_field(f, "peak", list, "step")
        if len(peak) != 2:
            raise ProtocolError(f"a step's peak must be [row, col]; got {len(peak)} numbers")
        stats = StepStats(entropy_bits=float(get_field(f, "ent", float, "step")),
                          entropy_norm=float(get_field(f, "ent_n", float, "step")), peak=(int(peak[0]), int(peak[1])),
                          peak_zone=get_field(f, "zone", str, "step"),
                          regions=tuple(_region_from_wire(r) for r in get_field(f, "regions", list, "step")))
        maps = {str(k): QuantMap.from_wire(v, str(k)) for k, v in get_field(f, "maps", dict, "step").items()}
        return ImageMaps(maps=maps, share=float(get_field(f, "share", float, "step")), stats=stats)


@dataclass(frozen=True)
class StepFrame:
    """One generated token as it travels: Step with quantised maps and the time it was sent."""

    index: int
    token_id: int
    text: str
    position: int
    t_ms: float  # ms since the session started (replay times by it)
    images: tuple[ImageMaps, ...]
    image_mass: float  # the share of the token's attention on all images
    model_ms: float
    maps_ms: float
    layers_seeing_image: int
    is_special: bool
    context: tuple[ContextLink, ...] = ()  # the text positions it read most; () in upgraded v1 frames
    sink: float = 0.0
    type: str = "step"

    @staticmethod
    def of_step(step: Step, t_ms: float) -> StepFrame:
        images = tuple(ImageMaps({name: QuantMap.of(values) for name, values in f.maps.items()}, f.share, f.stats)
                       for f in step.images)
        return StepFrame(index=step.index, token_id=step.token_id, text=step.text, position=step.position,
                         t_ms=t_ms, images=images, image_mass=step.image_mass, model_ms=step.model_ms,
                         maps_ms=step.maps_ms, layers_seeing_image=step.layers_seeing_image,
                         is_special=step.is_special, context=step.context, sink=step.sink)

    @property
    def maps(self) -> Mapping[str, QuantMap]:
        """The first image's maps."""
        return self.images[0].maps

    def to_wire(self) -> bytes:
        return pack("step", {
            "i": self.index, "token_id": self.token_id, "text": self.text, "pos": self.position,
            "t_ms": float(self.t_ms), "mass": float(self.image_mass),
            "images": [image.to_wire() for image in self.images],
            "model_ms": float(self.model_ms), "maps_ms": float(self.maps_ms),
            "seeing": int(self.layers_seeing_image), "special": bool(self.is_special),
            "context": [[link.position, float(link.value)] for link in self.context], "sink": float(self.sink),
        }, single=True)

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> StepFrame:
        images = tuple(ImageMaps.from_wire(m) for m in maps_of(f, "images", "step"))
        if not images:
            raise ProtocolError("a step frame holds at least one image; got none")
        context = []
        for link in optional_field(f, "context", list, [], "step"):
            if not (isinstance(link, list) and len(link) == 2 and isinstance(link[0], int)
                    and isinstance(link[1], (int, float))):
                raise ProtocolError(f"a context link must be [position, value]; got {describe(link)}")
            context.append(ContextLink(position=link[0], value=float(link[1])))
        return StepFrame(
            index=get_field(f, "i", int, "step"), token_id=get_field(f, "token_id", int, "step"),
            text=get_field(f, "text", str, "step"), position=get_field(f, "pos", int, "step"),
            t_ms=float(get_field(f, "t_ms", float, "step")), images=images,
            image_mass=float(get_field(f, "mass", float, "step")),
            model_ms=float(get_field(f, "model_ms", float, "step")),
            maps_ms=float(get_field(f, "maps_ms", float, "step")),
            layers_seeing_image=get_field(f, "seeing", int, "step"), is_special=get_field(f, "special", bool, "step"),
            context=tuple(context), sink=float(optional_field(f, "sink", float, 0.0, "step")),
        )


# -- the other server frames ---------------------------------------------------------------


@dataclass(frozen=True)
class EndFrame:
    reason: str  # eos | end_of_turn | max_tokens | cancelled | error
    tokens: int
    text: str
    prefill_ms: float
    total_ms: float
    message: str
    timings: Mapping[str, float]
    type: str = "end"

    @staticmethod
    def of_end(end: StreamEnd) -> EndFrame:
        return EndFrame(end.reason, end.tokens, end.text, end.prefill_ms, end.total_ms, end.message,
                        dict(end.timings))

    def to_wire(self) -> bytes:
        return pack("end", {"reason": self.reason, "tokens": self.tokens, "text": self.text,
                            "prefill_ms": float(self.prefill_ms), "total_ms": float(self.total_ms),
                            "message": self.message, "timings": {str(k): float(v) for k, v in self.timings.items()}})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> EndFrame:
        return EndFrame(
            reason=get_field(f, "reason", str, "end"), tokens=get_field(f, "tokens", int, "end"),
            text=get_field(f, "text", str, "end"), prefill_ms=float(get_field(f, "prefill_ms", float, "end")),
            total_ms=float(get_field(f, "total_ms", float, "end")), message=get_field(f, "message", str, "end"),
            timings={str(k): float(v) for k, v in get_field(f, "timings", dict, "end").items()},
        )


@dataclass(frozen=True)
class ErrorFrame:
    """A refusal or failure: a code, one line for people, and the `id` of the request it answers (if any)."""

    code: str
    message: str
    id: str | None = None
    type: str = "error"

    def to_wire(self) -> bytes:
        return pack("error", {"code": str(self.code), "message": self.message, "id": self.id})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> ErrorFrame:
        return ErrorFrame(code=get_field(f, "code", str, "error"), message=get_field(f, "message", str, "error"),
                          id=optional_field(f, "id", str, None, "error"))

    @staticmethod
    def internal(message: str = "the server failed; see its log") -> ErrorFrame:
        return ErrorFrame(ErrorCode.INTERNAL, message)


@dataclass(frozen=True)
class QueuedFrame:
    position: int  # 1 = next to run
    type: str = "queued"

    def to_wire(self) -> bytes:
        return pack("queued", {"position": self.position})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> QueuedFrame:
        return QueuedFrame(position=get_field(f, "position", int, "queued"))


@dataclass(frozen=True)
class ReplayFrame:
    recording: str
    steps: int
    speed: float
    paused: bool
    at: int  # the next step index to be sent
    type: str = "replay"

    def to_wire(self) -> bytes:
        return pack("replay", {"recording": self.recording, "steps": self.steps, "speed": float(self.speed),
                               "paused": self.paused, "at": self.at})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> ReplayFrame:
        return ReplayFrame(recording=get_field(f, "recording", str, "replay"),
                           steps=get_field(f, "steps", int, "replay"),
                           speed=float(get_field(f, "speed", float, "replay")),
                           paused=get_field(f, "paused", bool, "replay"), at=get_field(f, "at", int, "replay"))


@dataclass(frozen=True)
class SourceFrame:
    """Recording-only (never sent to a viewer): per image, the source DICOM's header without pixel data, or
    None (PNG/JPEG). DICOM exports reference and copy it; viewers never see patient identity from it.
    `deidentified`: medviz itself de-identified these headers (its own mark, never a DICOM tag's word; absent in
    older recordings, which read as identified). `from_pacs`: the server itself retrieved these images from its
    PACS (a `pacs` start, or `medviz record --pacs`), never a client's word; absent in older recordings and for
    uploads, which read as not from the PACS: only a source with this mark may be sent back to it from the browser."""

    headers: tuple[bytes | None, ...]
    deidentified: bool = False
    from_pacs: bool = False
    type: str = "source"

    def to_wire(self) -> bytes:
        marks = {**({"deidentified": True} if self.deidentified else {}),
                 **({"from_pacs": True} if self.from_pacs else {})}
        return pack("source", {"headers": list(self.headers), **marks})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> SourceFrame:
        headers = get_field(f, "headers", list, "source")
        if not all(h is None or isinstance(h, bytes) for h in headers):
            raise ProtocolError("field 'headers' of the source frame must be an array of bytes or nil")
        deidentified = optional_field(f, "deidentified", bool, False, "source")
        from_pacs = optional_field(f, "from_pacs", bool, False, "source")
        return SourceFrame(headers=tuple(headers), deidentified=deidentified, from_pacs=from_pacs)


@dataclass(frozen=True)
class OwnerFrame:
    """Owner-only (never sent to a watcher nor recorded): the key that lets the owner's page take its session
    back within `grace_s` of losing its socket (a reload), with a `rejoin` request."""

    session: str
    key: str
    grace_s: float
    type: str = "owner"

    def to_wire(self) -> bytes:
        return pack("owner", {"session": self.session, "key": self.key, "grace_s": float(self.grace_s)})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> OwnerFrame:
        return OwnerFrame(session=get_field(f, "session", str, "owner"), key=get_field(f, "key", str, "owner"),
                          grace_s=float(get_field(f, "grace_s", float, "owner")))


Frame = (StartFrame | StepFrame | EndFrame | ErrorFrame | QueuedFrame | ReplayFrame | SourceFrame | AnalysisFrame
         | OwnerFrame)
_DECODERS: dict[str, Any] = {
    "start": StartFrame.from_wire, "step": StepFrame.from_wire, "end": EndFrame.from_wire,
    "error": ErrorFrame.from_wire, "queued": QueuedFrame.from_wire, "replay": ReplayFrame.from_wire,
    "source": SourceFrame.from_wire, "analysis": AnalysisFrame.from_wire, "owner": OwnerFrame.from_wire,
}


_TIMING = {"start": "created", "step": "t_ms"}  # the field that times each timed frame type


def peek_timing(data: bytes) -> tuple[str, float | None]:
    """A frame's type and its timing, without building its maps: a start's `created` (seconds since the
    epoch), a step's `t_ms` (milliseconds since that start), None for the others. For load clients that
    must cost the machine as little as possible (benchmarks/fanout.py): it reads the frame's first fields
    only (codec.peek_fields), a few microseconds, where `decode` checks and builds the whole frame;
    ProtocolError if what it reads is malformed."""

    def enough(found: dict[str, Any]) -> bool:
        kind = found.get("type")
        return "v" in found and isinstance(kind, str) and (kind not in _TIMING or _TIMING[kind] in found)

    f = peek_fields(data, frozenset({"v", "type", *_TIMING.values()}), enough)
    check_version(f.get("v", VERSION))
    kind = f.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(f"a frame needs a string field 'type'; got {describe(kind)}")
    field = _TIMING.get(kind)
    if field is None:
        return kind, None
    at = get_field(f, field, float, kind)
    return kind, float(at)


def decode(data: bytes) -> Frame:
    """Bytes of one server frame (protocol v1 or v2) -> its typed frame; ProtocolError if malformed."""
    from medviz_core.wire.v1 import upgrade

    f = unpack(data)
    if f.get("v", 2) == 1:
        f = upgrade(f)
    decoder = _DECODERS.get(f["type"])
    if decoder is None:
        raise ProtocolError(f"unknown frame type {f['type']!r}; expected one of {', '.join(_DECODERS)}")
    frame: Frame = decoder(f)
    return frame

