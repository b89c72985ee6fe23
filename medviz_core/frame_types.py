"""The typed frames of wire protocol v1 (docs/protocol.md): what `frames.decode` returns and
what `frames.parse_client_frame` accepts, plus the typed field reader both directions share.

Owns: the frozen dataclasses of every server frame (start, step, end, error, queued,
replay, analysis and its results) and every client request, and `get_field`, which reads
one field of a msgpack map with a message naming the field, what was expected and what
came. Does not own the msgpack field names of a frame or the encoding (frames.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np

from .errors import ProtocolError
from .types import GenerationParams, ModelFacts, StepStats

MAX_IMAGES = 4
"""Images a session may hold (the engine's MAX_IMAGES; kept here so frames need no torch)."""
MAX_LABEL_CHARS = 32
ANALYSIS_KINDS = ("gradient", "heads", "faithfulness", "agreement")
ANALYSIS_STATUSES = ("queued", "running", "done", "cancelled", "error")


# -- server frames -------------------------------------------------------------------------


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
class ImageInfo:
    """One image of a session as the start frame carries it."""

    png: bytes
    size: tuple[int, int]  # (width, height)
    label: str
    positions: tuple[int, ...]  # its image-token positions


@dataclass(frozen=True)
class StartFrame:
    session: str
    model: ModelFacts
    token_ids: tuple[int, ...]
    image_positions: tuple[int, ...]
    question: str | None
    image_png: bytes  # the first image
    image_size: tuple[int, int]  # (width, height) of the first image
    methods: tuple[str, ...]
    params: GenerationParams
    created: float
    recording: str | None = None
    images: tuple[ImageInfo, ...] = ()  # every image, the first included (old frames: built from `image`)
    type: str = "start"


@dataclass(frozen=True)
class ImageMaps:
    """One image's maps and statistics in a step (stats.image_mass: that image's share)."""

    maps: Mapping[str, QuantMap]
    stats: StepStats


@dataclass(frozen=True)
class StepFrame:
    index: int
    token_id: int
    text: str
    position: int
    t_ms: float
    maps: Mapping[str, QuantMap]  # the first image's
    stats: StepStats  # the first image's, with image_mass the total over all images
    model_ms: float
    maps_ms: float
    layers_seeing_image: int
    is_special: bool
    shares: tuple[float, ...] = ()  # each image's share of attention; () for one image
    more: tuple[ImageMaps, ...] = ()  # images 2..k
    type: str = "step"

    def image_maps(self, image: int) -> Mapping[str, QuantMap]:
        """The maps of image `image` (0 = the first)."""
        return self.maps if image == 0 else self.more[image - 1].maps


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


@dataclass(frozen=True)
class GradientResult:
    maps: tuple[QuantMap, ...]  # one per image


@dataclass(frozen=True)
class HeadsResult:
    layers: int
    heads: int
    maps: tuple[QuantMap, ...]  # raster over (layer, head, image)
    mass: tuple[float, ...]  # layers * heads
    entropy: tuple[float, ...]


@dataclass(frozen=True)
class CurveResult:
    fractions: tuple[float, ...]
    scores: tuple[float, ...]
    auc: float


@dataclass(frozen=True)
class FaithfulnessResult:
    method: str
    deletion: CurveResult
    insertion: CurveResult
    random_deletion: CurveResult
    random_insertion: CurveResult


@dataclass(frozen=True)
class MethodAgreement:
    hit: bool
    iou: float
    coverage: float


@dataclass(frozen=True)
class AgreementResult:
    per_method: Mapping[str, MethodAgreement]
    image: int


AnalysisResult = Union[GradientResult, HeadsResult, FaithfulnessResult, AgreementResult]


@dataclass(frozen=True)
class AnalysisFrame:
    job: str
    kind: str
    index: int
    status: str  # queued | running | done | cancelled | error
    message: str
    result: AnalysisResult | None
    type: str = "analysis"


Frame = Union[StartFrame, StepFrame, EndFrame, ErrorFrame, QueuedFrame, ReplayFrame, AnalysisFrame]


# -- client requests -----------------------------------------------------------------------


@dataclass(frozen=True)
class StartRequest:
    """A client's request to start a session, types checked against ClientLimits.

    `images` holds every file (1..MAX_IMAGES); `image` is the first. Give either: the
    other is filled in.
    """

    image: bytes = b""
    question: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    methods: tuple[str, ...] | None = None
    record: bool = False
    images: tuple[bytes, ...] = ()
    labels: tuple[str, ...] = ()
    type: str = "start"

    def __post_init__(self) -> None:
        if not self.images:
            object.__setattr__(self, "images", (self.image,))
        elif not self.image:
            object.__setattr__(self, "image", self.images[0])


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


@dataclass(frozen=True)
class BoxRequest:
    """An annotation box in pixel coordinates of image `image` of the session."""

    label: str
    xywh: tuple[int, int, int, int]
    image: int = 0


@dataclass(frozen=True)
class AnalyzeRequest:
    """On-demand analysis of token `index`. Fields a kind does not use are normalised away
    (method "" unless faithfulness, boxes () unless agreement, steps 0 unless faithfulness),
    so equal requests compare equal and share one cached job."""

    kind: str
    index: int
    method: str = ""
    boxes: tuple[BoxRequest, ...] = ()
    steps: int = 0
    type: str = "analyze"


@dataclass(frozen=True)
class CancelAnalysisRequest:
    job: str
    type: str = "cancel_analysis"


ClientFrame = Union[StartRequest, CancelRequest, PauseRequest, ResumeRequest, SeekRequest, SpeedRequest,
                    AnalyzeRequest, CancelAnalysisRequest]


# -- reading typed fields ------------------------------------------------------------------

Kind = Union[type, tuple[type, ...]]
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", bytes: "bytes",
          list: "an array", dict: "a map", type(None): "nil"}


def describe(value: object) -> str:
    """What a value is, for error messages (never the value itself: it may be image bytes)."""
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return _NAMES.get(type(value), type(value).__name__)


def _expected(kind: Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def get_field(m: Mapping[str, Any], key: str, kind: Kind, where: str, error: type[Exception] = ProtocolError) -> Any:
    """m[key] if it has type `kind` (an int passes for a float, a bool never for an int)."""
    if key not in m:
        raise error(f"{where} frame is missing field '{key}'")
    value = m[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    is_bool = isinstance(value, bool)
    ok = isinstance(value, kinds) and (not is_bool or bool in kinds)
    if float in kinds and isinstance(value, int) and not is_bool:
        ok = True
    if not ok:
        raise error(f"field '{key}' of the {where} frame must be {_expected(kind)}; got {describe(value)}")
    return value


def optional_field(m: Mapping[str, Any], key: str, kind: Kind, default: Any, where: str,
                   error: type[Exception] = ProtocolError) -> Any:
    """Like get_field, but `default` when the key is absent (or nil where the default is nil)."""
    if key not in m or (m[key] is None and default is None):
        return default
    return get_field(m, key, kind, where, error)

