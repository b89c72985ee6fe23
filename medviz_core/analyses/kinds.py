"""The registry of analysis kinds: per kind, its request rules, its checks on a source, how it is computed.

Owns: `AnalysisKind` (a kind's wire rules, `wire/results.KINDS`: the fields it takes and
their bounds, its result type; its own check against a source, if any; and its compute:
`OnModel`, blocking torch code that needs the engine, or `FromFrames`, numpy over the
source's frames), `ANALYSES` (every kind, in the protocol's order), `check_request` (what
a source refuses: a token not generated yet, a method it did not compute, too many
faithfulness steps for the grid, boxes outside their image, then the kind's own check) and
`compute` (a request's typed result). The protocol's half of each kind lives in the wire
package, which imports nothing above it; this module completes it. Adding a kind: its
`KindRules` and result type in wire/results.py, its computing in analyses/compute.py, its
entry here. Does not own the computing itself (analyses/compute.py) or queueing and replies
(server/analysis_jobs.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from medviz_core.analyses.compute import (
    AnalysisSource,
    agreement_of,
    check_biplanar,
    dicom_of,
    faithfulness_of,
    gradient_of,
    heads_of,
    volume_of,
)
from medviz_core.engine.api import AnalysisEngine
from medviz_core.errors import MedvizError, RequestError
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import KINDS, AnalysisResult, KindRules

SourceCheck = Callable[[AnalysisSource, AnalyzeRequest], None]  # RequestError for a request the source cannot answer


@dataclass(frozen=True)
class OnModel:
    """A kind the model computes: blocking torch code for the model's worker thread."""

    compute: Callable[[AnalysisEngine, AnalysisSource, AnalyzeRequest, threading.Event], AnalysisResult]


@dataclass(frozen=True)
class FromFrames:
    """A kind computed from the source's frames alone (numpy): no model needed."""

    compute: Callable[[AnalysisSource, AnalyzeRequest], AnalysisResult]


@dataclass(frozen=True)
class AnalysisKind:
    name: str
    rules: KindRules  # the protocol's half: the fields it takes and their bounds, its result type
    how: OnModel | FromFrames
    check: SourceCheck | None = None  # its own refusal beyond the rules' (a 3D view needs two views)

    @property
    def needs_model(self) -> bool:
        return isinstance(self.how, OnModel)


def _kinds(*kinds: tuple[str, OnModel | FromFrames, SourceCheck | None]) -> dict[str, AnalysisKind]:
    return {name: AnalysisKind(name, KINDS[name], how, check) for name, how, check in kinds}


ANALYSES: dict[str, AnalysisKind] = _kinds(
    ("gradient", OnModel(gradient_of), None),
    ("heads", OnModel(heads_of), None),
    ("faithfulness", OnModel(faithfulness_of), None),
    ("agreement", FromFrames(agreement_of), None),
    ("volume", FromFrames(volume_of), check_biplanar),
    ("dicom", FromFrames(dicom_of), None),
)


def check_request(source: AnalysisSource, request: AnalyzeRequest) -> None:
    """RequestError for a request this source cannot answer."""
    count = len(source.steps)
    if request.index >= count:
        raise RequestError(f"token index {request.index} has not been generated; the {source.what} has "
                           f"{count} token(s) so far")
    kind, start = ANALYSES[request.kind], source.start
    if kind.rules.method and request.method != "gradient" and request.method not in start.methods:
        also = " or gradient" if kind.rules.gradient else ""
        raise RequestError(f"method {request.method!r} is not computed by this {source.what}; expected one of "
                           f"{', '.join(start.methods)}{also}")
    if kind.rules.steps:
        cells = start.model.grid[0] * start.model.grid[1]
        if request.steps < 1:
            raise RequestError(f"{request.kind} steps must be at least 1; got {request.steps}")
        if request.steps > cells:
            raise RequestError(f"{request.kind} steps must be at most the {cells} grid cells; got {request.steps}")
    if kind.check is not None:
        kind.check(source, request)
    for box in request.boxes:
        if box.image >= len(start.images):
            raise RequestError(f"box {box.label!r} is on image {box.image}; the {source.what} has {len(start.images)}")
        width, height = start.images[box.image].size
        x, y, w, h = box.xywh
        if x + w > width or y + h > height:
            raise RequestError(f"box {box.label!r} xywh {list(box.xywh)} must lie inside image {box.image} "
                               f"({width}x{height})")


def compute(engine: AnalysisEngine | None, source: AnalysisSource, request: AnalyzeRequest,
            cancel: threading.Event) -> AnalysisResult:
    """The typed result of a done job: errors.Cancelled once `cancel` is set, MedvizError for a clear failure
    (a kind that needs the model where none is loaded: `engine` None)."""
    how = ANALYSES[request.kind].how
    if isinstance(how, FromFrames):
        return how.compute(source, request)
    if engine is None:
        raise MedvizError(f"a {request.kind} analysis needs the model, and none is loaded here")
    return how.compute(engine, source, request, cancel)
