"""Wire protocol v2: the `analysis` frame and the typed result of every analysis kind.

Owns: `AnalysisFrame` (a job's state for the socket that asked, with the request's `id`
echoed) and the results: `GradientResult`, `HeadsResult`, `FaithfulnessResult` (with its
`Curve`s), `AgreementResult`, `VolumeResult` and `DicomResult`, each with `to_wire()` /
`from_wire()` and an `of(...)` that builds it from the engine's arrays, and `KINDS`, each
kind's `KindRules` (the fields its request takes, its result type). Results travel as
float64 (maps as quantised [lo, hi, u8] like step maps). Does not compute anything
(analyses/gradient.py, analyses/faithfulness.py, analyses/agreement.py, analyses/biplanar.py, export/dicom.py do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np

from medviz_core.errors import ProtocolError
from medviz_core.types import METHODS
from medviz_core.wire.codec import QuantMap, describe, get_field, optional_field, pack

AnalysisStatus = Literal["queued", "running", "done", "cancelled", "error"]
ANALYSIS_STATUSES: dict[str, AnalysisStatus] = {status: status for status in get_args(AnalysisStatus)}


def _floats(m: Mapping[str, Any], key: str) -> tuple[float, ...]:
    return tuple(float(v) for v in get_field(m, key, list, "analysis"))


def _quant_maps(m: Mapping[str, Any], kind: str) -> tuple[QuantMap, ...]:
    return tuple(QuantMap.from_wire(q, kind) for q in get_field(m, "maps", list, "analysis"))


@dataclass(frozen=True)
class GradientResult:
    """Chefer gradient relevancy of the token: one map per image."""

    maps: tuple[QuantMap, ...]

    @staticmethod
    def of(maps: np.ndarray) -> GradientResult:
        return GradientResult(tuple(QuantMap.of(m) for m in maps))

    def to_wire(self) -> dict[str, Any]:
        return {"maps": [q.to_wire() for q in self.maps]}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> GradientResult:
        return GradientResult(_quant_maps(m, "gradient"))


@dataclass(frozen=True)
class HeadsResult:
    """Every layer's and head's attention to the images: map (l, h, i) at (l * heads + h) * images + i."""

    layers: int
    heads: int
    maps: tuple[QuantMap, ...]
    mass: tuple[float, ...]  # layers * heads: each head's share of attention on the images
    entropy: tuple[float, ...]  # layers * heads: normalised entropy of its image attention

    @staticmethod
    def of(maps: np.ndarray, mass: np.ndarray, entropy: np.ndarray) -> HeadsResult:
        """[L, H, images, gh, gw] maps and [L, H] mass / entropy."""
        layers, heads = int(maps.shape[0]), int(maps.shape[1])
        flat = maps.reshape(layers * heads * int(maps.shape[2]), *maps.shape[3:])
        return HeadsResult(layers, heads, tuple(QuantMap.of(m) for m in flat),
                           tuple(float(v) for v in np.ravel(mass)), tuple(float(v) for v in np.ravel(entropy)))

    def to_wire(self) -> dict[str, Any]:
        return {"layers": self.layers, "heads": self.heads, "maps": [q.to_wire() for q in self.maps],
                "mass": list(self.mass), "entropy": list(self.entropy)}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> HeadsResult:
        return HeadsResult(get_field(m, "layers", int, "analysis"), get_field(m, "heads", int, "analysis"),
                           _quant_maps(m, "heads"), _floats(m, "mass"), _floats(m, "entropy"))


class CurveLike(Protocol):
    """faithfulness.Curve's fields (the wire does not import the analysis modules)."""

    @property
    def fractions(self) -> tuple[float, ...]: ...

    @property
    def scores(self) -> tuple[float, ...]: ...

    @property
    def auc(self) -> float: ...


@dataclass(frozen=True)
class Curve:
    fractions: tuple[float, ...]
    scores: tuple[float, ...]
    auc: float

    @staticmethod
    def of(curve: CurveLike) -> Curve:
        return Curve(tuple(float(v) for v in curve.fractions), tuple(float(v) for v in curve.scores),
                     float(curve.auc))

    def to_wire(self) -> dict[str, Any]:
        return {"fractions": list(self.fractions), "scores": list(self.scores), "auc": self.auc}

    @staticmethod
    def from_wire(m: Mapping[str, Any], key: str) -> Curve:
        c = get_field(m, key, dict, "analysis")
        return Curve(_floats(c, "fractions"), _floats(c, "scores"), float(get_field(c, "auc", float, "analysis")))


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion and insertion curves of the token's probability for one method, beside random orders."""

    method: str
    deletion: Curve
    insertion: Curve
    random_deletion: Curve
    random_insertion: Curve

    @staticmethod
    def of(method: str, deletion: CurveLike, insertion: CurveLike, random_deletion: CurveLike,
           random_insertion: CurveLike) -> FaithfulnessResult:
        return FaithfulnessResult(method, Curve.of(deletion), Curve.of(insertion), Curve.of(random_deletion),
                                  Curve.of(random_insertion))

    def to_wire(self) -> dict[str, Any]:
        return {"method": self.method, "deletion": self.deletion.to_wire(), "insertion": self.insertion.to_wire(),
                "random_deletion": self.random_deletion.to_wire(),
                "random_insertion": self.random_insertion.to_wire()}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> FaithfulnessResult:
        curves = [Curve.from_wire(m, k) for k in ("deletion", "insertion", "random_deletion", "random_insertion")]
        return FaithfulnessResult(get_field(m, "method", str, "analysis"), *curves)


@dataclass(frozen=True)
class MethodAgreement:
    hit: bool  # pointing game
    iou: float  # top regions vs the boxes
    coverage: float  # share of the boxes covered


@dataclass(frozen=True)
class AgreementResult:
    per_method: Mapping[str, MethodAgreement]
    image: int  # which image the boxes are on

    @staticmethod
    def of(per_method: Mapping[str, tuple[bool, float, float]], image: int) -> AgreementResult:
        return AgreementResult({m: MethodAgreement(bool(h), float(i), float(c)) for m, (h, i, c) in per_method.items()},
                               image)

    def to_wire(self) -> dict[str, Any]:
        return {"per_method": {m: {"hit": a.hit, "iou": a.iou, "coverage": a.coverage}
                               for m, a in self.per_method.items()}, "image": self.image}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> AgreementResult:
        scores = {}
        for method, s in get_field(m, "per_method", dict, "analysis").items():
            if not isinstance(s, dict):
                raise ProtocolError(f"agreement of '{method}' must be a map; got {describe(s)}")
            scores[str(method)] = MethodAgreement(get_field(s, "hit", bool, "analysis"),
                                                  float(get_field(s, "iou", float, "analysis")),
                                                  float(get_field(s, "coverage", float, "analysis")))
        return AgreementResult(scores, get_field(m, "image", int, "analysis"))


@dataclass(frozen=True)
class VolumeResult:
    """The biplanar 3D estimate of one token (analyses/biplanar.py): size^3 values in [y, x, z] order, max 1."""

    method: str
    size: int
    volume: QuantMap  # size^3 bytes
    peak: tuple[int, int, int] | None  # (y, x, z); None for an all-zero volume
    frontal: int  # which images were used
    lateral: int

    def to_wire(self) -> dict[str, Any]:
        return {"method": self.method, "size": self.size, "volume": self.volume.to_wire(),
                "peak": None if self.peak is None else list(self.peak), "frontal": self.frontal,
                "lateral": self.lateral}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> VolumeResult:
        peak = optional_field(m, "peak", list, None, "analysis")
        return VolumeResult(method=get_field(m, "method", str, "analysis"), size=get_field(m, "size", int, "analysis"),
                            volume=QuantMap.from_wire(get_field(m, "volume", list, "analysis"), "volume"),
                            peak=None if peak is None else (int(peak[0]), int(peak[1]), int(peak[2])),
                            frontal=get_field(m, "frontal", int, "analysis"),
                            lateral=get_field(m, "lateral", int, "analysis"))


@dataclass(frozen=True)
class DicomResult:
    """A DICOM export (export/dicom.py) as one zip of its files, with the notes a user must read."""

    zip: bytes
    names: tuple[str, ...]
    notes: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"zip": self.zip, "names": list(self.names), "notes": list(self.notes)}

    @staticmethod
    def from_wire(m: Mapping[str, Any]) -> DicomResult:
        return DicomResult(get_field(m, "zip", bytes, "analysis"),
                           tuple(str(v) for v in get_field(m, "names", list, "analysis")),
                           tuple(str(v) for v in get_field(m, "notes", list, "analysis")))


AnalysisResult = GradientResult | HeadsResult | FaithfulnessResult | AgreementResult | VolumeResult | DicomResult


@dataclass(frozen=True)
class KindRules:
    """The protocol's half of an analysis kind: the fields its request takes and its result type. A field a kind
    does not take is normalised away when parsed (client_frames.AnalyzeRequest); how a kind is checked against
    a session and computed is medviz_core/analyses/kinds.py's."""

    result: type[AnalysisResult]  # the `result` of its done frame
    method: bool = False  # it names one of METHODS (default consensus)
    gradient: bool = False  # ... or "gradient"
    steps: bool = False  # it takes a step count, 1..MAX_FAITHFULNESS_STEPS (default DEFAULT_FAITHFULNESS_STEPS)
    boxes: bool = False  # it takes 1..MAX_BOXES boxes, all on one image

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods a request of this kind may name; () if it takes none."""
        if not self.method:
            return ()
        return (*METHODS, "gradient") if self.gradient else METHODS


KINDS: dict[str, KindRules] = {  # every analysis kind, in the order the protocol lists them
    "gradient": KindRules(GradientResult),
    "heads": KindRules(HeadsResult),
    "faithfulness": KindRules(FaithfulnessResult, method=True, gradient=True, steps=True),
    "agreement": KindRules(AgreementResult, boxes=True),
    "volume": KindRules(VolumeResult, method=True),
    "dicom": KindRules(DicomResult, method=True),
}


@dataclass(frozen=True)
class AnalysisFrame:
    """One analysis job's state for the socket that asked; `id` is that request's own id (or None)."""

    job: str
    kind: str
    index: int  # the token
    status: AnalysisStatus
    message: str = ""
    result: AnalysisResult | None = None
    id: str | None = None
    type: str = "analysis"

    def with_id(self, request_id: str | None) -> AnalysisFrame:
        return AnalysisFrame(self.job, self.kind, self.index, self.status, self.message, self.result, request_id)

    def to_wire(self) -> bytes:
        return pack("analysis", {"job": self.job, "kind": self.kind, "index": self.index, "status": self.status,
                                 "message": self.message, "id": self.id,
                                 "result": None if self.result is None else self.result.to_wire()})

    @staticmethod
    def from_wire(f: Mapping[str, Any]) -> AnalysisFrame:
        kind = get_field(f, "kind", str, "analysis")
        given = get_field(f, "status", str, "analysis")
        status = ANALYSIS_STATUSES.get(given)
        if kind not in KINDS or status is None:
            raise ProtocolError(f"analysis kind {kind!r} / status {given!r} is not one the protocol knows")
        result = get_field(f, "result", (dict, type(None)), "analysis")
        return AnalysisFrame(job=get_field(f, "job", str, "analysis"), kind=kind,
                             index=get_field(f, "index", int, "analysis"), status=status,
                             message=get_field(f, "message", str, "analysis"),
                             result=None if result is None else KINDS[kind].result.from_wire(result),
                             id=optional_field(f, "id", str, None, "analysis"))

