"""What each analysis kind computes from a session's frames, and the source it reads them from.

Owns: `AnalysisSource` (the start frame and steps of a live session or a recording, the
recording-only DICOM headers, and where results are recorded), `recording_source`, the views of a
source by who asks (`owner_view`: the session's owner, identity and all; `viewer_view`: anyone else,
DICOM headers de-identified under a key of its own, so no job or cached result of one view answers
the other; `replay_source`), `job_id`
(derived from the request, so equal requests share a job), and each kind's computing:
`gradient_of`, `heads_of`, `faithfulness_of` (the model: blocking torch code the server's
worker thread runs; `faithfulness_of_token` computes several methods of one token at once),
`agreement_of`, `volume_of` with its check `check_biplanar`, and `dicom_of` (numpy over the
frames). Maps are used as they travel (decoded from the step frames), so a live session and
its replay give the same numbers. Also `export_token_map`, the map, regions and picture a
DICOM export of one token or a token range takes (the browser's Export DICOM and `medviz
export`). Does not own which kind is which, the checks every kind shares or the dispatch
(analyses/kinds.py), or queueing, caching and replies (server/).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medviz_core.engine.api import AnalysisEngine
from medviz_core.errors import ExportError, MedvizError, RequestError
from medviz_core.recording.deidentify import IDENTIFYING_KINDS, Deidentifier, is_deidentified
from medviz_core.types import SourceKind, source_key
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.codec import QuantMap
from medviz_core.wire.results import (
    AgreementResult,
    AnalysisFrame,
    DicomResult,
    FaithfulnessResult,
    GradientResult,
    HeadsResult,
    VolumeResult,
)
from medviz_core.wire.server_frames import StartFrame, StepFrame

if TYPE_CHECKING:
    from medviz_core.analyses.gradient import TokenContext


@dataclass(frozen=True)
class AnalysisSource:
    """The frames an analysis reads: a live session so far, or a recording."""

    key: str  # types.source_key: "session:<id>" or "recording:<id>": jobs are cached per source
    start: StartFrame
    steps: tuple[StepFrame, ...]  # index order, from 0
    recording: Path | None = None  # done results are appended here
    recorded: Mapping[str, bytes] = field(default_factory=dict)  # job id -> a done frame already recorded
    what: SourceKind = "session"  # how messages name it
    headers: tuple[bytes | None, ...] = ()  # per image, the source DICOM header (recording-only), if any
    unrecorded: frozenset[str] = frozenset()  # kinds whose results are neither read from nor appended to `recording`
    from_pacs: bool = False  # the source frame's mark: the server itself retrieved the images from its PACS


DEIDENTIFIED = "#deidentified"
"""The key suffix of a source's de-identified view (`viewer_view`): its jobs and cached results are its own."""


def owner_view(source: AnalysisSource, recording_deidentified: bool) -> AnalysisSource:
    """A live session as its owner sees it: the identified headers; a `dicom` result of a session whose recording is
    de-identified is neither appended to it nor answered from it (an identified export stays with its owner)."""
    if not recording_deidentified or not has_dicom(source):
        return source
    return replace(source, unrecorded=IDENTIFYING_KINDS)


def has_dicom(source: AnalysisSource) -> bool:
    """Whether any image of the source came with a DICOM header (PNG and JPEG carry no identity)."""
    return any(header is not None for header in source.headers)


def viewer_view(source: AnalysisSource, deidentifier: Deidentifier, recording_deidentified: bool) -> AnalysisSource:
    """A source as a watcher or a replay viewer sees it: its DICOM headers de-identified by `deidentifier` (a live
    session's own, its recording's key: exports from both agree) under a key of its own. Its `dicom` results join
    its recording only where that recording is de-identified (else they are its own, neither read nor appended)."""
    return replace(source, key=source.key + DEIDENTIFIED, headers=deidentifier.headers(source.headers),
                   unrecorded=frozenset() if recording_deidentified else IDENTIFYING_KINDS)


def replay_source(name: str, path: Path, recording: Any) -> AnalysisSource:
    """The source a replay's analyses read: the recording's, or where its headers hold identity (a clinical
    archive's recording: no medviz de-identified mark on its source frame) its `viewer_view` under a new key, so no
    replay viewer gets an identified export."""
    source = recording_source(name, path, recording)
    if is_deidentified(recording.source):
        return source
    return viewer_view(source, Deidentifier(), recording_deidentified=False)


def recording_source(name: str, path: Path, recording: Any) -> AnalysisSource:
    """The source of a read recording (recording.Recording with a start frame)."""
    if recording.start is None:
        raise RequestError(f"recording {name!r} is empty")
    source = recording.source
    return AnalysisSource(
        key=source_key("recording", name), start=recording.start, recording=path, what="recording",
        steps=tuple(f.frame for f in recording.steps if isinstance(f.frame, StepFrame)),
        recorded={f.frame.job: f.sent for f in recording.analyses if isinstance(f.frame, AnalysisFrame)},
        headers=() if source is None else source.headers, from_pacs=source is not None and source.from_pacs,
    )


def job_id(request: AnalyzeRequest) -> str:
    """`kind-index-hash`: the hash covers what the kind uses (method, steps, boxes)."""
    detail = repr((request.method, request.steps, [(b.label, b.xywh, b.image) for b in request.boxes]))
    return f"{request.kind}-{request.index}-{hashlib.sha1(detail.encode('utf-8')).hexdigest()[:8]}"


def gradient_of(engine: AnalysisEngine, source: AnalysisSource, request: AnalyzeRequest,
                cancel: threading.Event) -> GradientResult:
    """Chefer gradient relevancy of the token, one map per image (analysis.gradient_relevancy)."""
    from medviz_core.analyses.gradient import gradient_relevancy

    context, _ = _context(engine, source, request.index)
    return GradientResult.of(gradient_relevancy(engine, context, cancel))


def heads_of(engine: AnalysisEngine, source: AnalysisSource, request: AnalyzeRequest,
             cancel: threading.Event) -> HeadsResult:
    """Every layer's and head's attention of the token to the images (analysis.layer_head_view)."""
    from medviz_core.analyses.gradient import layer_head_view

    context, _ = _context(engine, source, request.index)
    view = layer_head_view(engine, context, cancel)
    return HeadsResult.of(view.maps, view.image_mass, view.entropy)


def faithfulness_of(engine: AnalysisEngine, source: AnalysisSource, request: AnalyzeRequest,
                    cancel: threading.Event) -> FaithfulnessResult:
    """Deletion and insertion curves of the token for the request's method, beside random orders."""
    _, result = next(faithfulness_of_token(engine, source, request.index, (request.method,), request.steps, cancel))
    return result


def faithfulness_of_token(engine: AnalysisEngine, source: AnalysisSource, index: int, methods: tuple[str, ...],
                          steps: int, cancel: threading.Event) -> Iterator[tuple[str, FaithfulnessResult]]:
    """(method, result) for several methods of one token, in order: the same numbers as one `faithfulness_of`
    per method, with the random baselines computed once for the token. errors.Cancelled once `cancel` is set.
    Deletion/insertion on the first image (the others stay as they are in a study)."""
    from medviz_core.analyses.faithfulness import batch
    from medviz_core.analyses.gradient import gradient_relevancy, token_scorer

    context, images = _context(engine, source, index)
    grid = source.start.model.grid
    maps = [(index, method, gradient_relevancy(engine, context, cancel)[0] if method == "gradient"
             else source.steps[index].maps[method].values(grid)) for method in methods]
    labels = [image.label for image in source.start.images]
    scorer = token_scorer(engine, context, source.start.question, images, labels, image_index=0)
    for report in batch(images[0], maps, lambda _: scorer, steps=steps, cancel=cancel):
        yield report.method, FaithfulnessResult.of(report.method, report.deletion, report.insertion,
                                                   report.random_deletion, report.random_insertion)


def _context(engine: AnalysisEngine, source: AnalysisSource, index: int) -> tuple[TokenContext, list[np.ndarray]]:
    """The token's context (the session's prompt rebuilt on this engine) and the images as RGB arrays."""
    from medviz_core.analyses.gradient import token_context
    from medviz_core.imaging.load import load_image

    start = source.start
    images = [load_image(image.png) for image in start.images]
    labels = [image.label for image in start.images]
    context = token_context(engine, images, start.question, [s.token_id for s in source.steps], index, labels,
                            preset=start.preset)
    rebuilt = tuple(int(t) for t in context.inputs["input_ids"][0].tolist())
    if rebuilt != start.token_ids:
        raise MedvizError(f"the {source.what}'s prompt could not be rebuilt on model {engine.facts.name} "
                          f"(recorded with {start.model.name})")
    return context, images


def agreement_of(source: AnalysisSource, request: AnalyzeRequest) -> AgreementResult:
    """How well each method's map of the token agrees with the request's boxes (analyses/agreement.py)."""
    from medviz_core.analyses.agreement import Box, box_coverage, iou_top_regions, pointing_game

    image = request.boxes[0].image
    size = source.start.images[image].size
    boxes = [Box(b.label, "box", *b.xywh, size[0], size[1]) for b in request.boxes]
    scores = {}
    for method, quant in source.steps[request.index].images[image].maps.items():
        values = quant.values(source.start.model.grid)
        scores[method] = (pointing_game(values, boxes, size), iou_top_regions(values, boxes, size),
                          box_coverage(values, boxes, size))
    return AgreementResult.of(scores, image)


def biplanar_pair(start: StartFrame) -> tuple[int, int] | None:
    """(frontal, lateral) image indices when the labels name one of each (biplanar.choose_views)."""
    from medviz_core.analyses.biplanar import choose_views

    return choose_views([image.label for image in start.images])


def check_biplanar(source: AnalysisSource, request: AnalyzeRequest) -> None:
    """RequestError unless the source's labels name one frontal and one lateral image (a 3D view's check)."""
    if biplanar_pair(source.start) is None:
        raise RequestError(f"a 3D view needs one frontal (PA or AP) and one lateral image, by their labels; this "
                           f"{source.what}'s labels are {[image.label for image in source.start.images]}")


def volume_of(source: AnalysisSource, request: AnalyzeRequest) -> VolumeResult:
    """The biplanar 3D estimate of the token from its frontal and lateral maps (analyses/biplanar.py)."""
    from medviz_core.analyses.biplanar import biplanar_volume

    pair = biplanar_pair(source.start)
    assert pair is not None  # check_biplanar refused it otherwise
    frontal, lateral = pair
    grid = source.start.model.grid
    step = source.steps[request.index]
    volume = biplanar_volume(step.images[frontal].values(request.method, grid),
                             step.images[lateral].values(request.method, grid))
    return VolumeResult(method=request.method, size=volume.size, volume=QuantMap.of(volume.values),
                        peak=volume.peak, frontal=frontal, lateral=lateral)


def export_token_map(source: AnalysisSource, first: int, last: int, method: str, image: int = 0) -> tuple[Any, Any]:
    """The (ExportSource, ExportMap) of tokens first..last (inclusive) of one image: the mean map and its regions."""
    from pydicom import dcmread

    from medviz_core.export.dicom import ExportMap, ExportSource
    from medviz_core.imaging.load import load_image
    from medviz_core.maps.regions import find_regions

    count = len(source.steps)
    if not 0 <= first <= last < count:
        raise ExportError(f"tokens {first}..{last} are not all in this {source.what}: it has tokens 0..{count - 1}")
    if not 0 <= image < len(source.start.images):
        raise ExportError(f"image {image} is not in this {source.what}; it has {len(source.start.images)}")
    if method not in source.start.methods:
        raise ExportError(f"method {method!r} is not in this {source.what}; it has {', '.join(source.start.methods)}")
    grid, info = source.start.model.grid, source.start.images[image]
    maps = [source.steps[i].images[image].values(method, grid) for i in range(first, last + 1)]
    relevancy = np.mean(maps, axis=0).astype(np.float32)
    # the shown method's own regions: a step carries consensus's only
    regions = (source.steps[first].images[image].stats.regions if first == last and method == "consensus"
               else find_regions(relevancy, info.size))
    text = "".join(source.steps[i].text for i in range(first, last + 1)).strip()[:40]
    description = f"token {first} {text!r}" if first == last else f"tokens {first}-{last} {text!r}"
    header = source.headers[image] if image < len(source.headers) else None
    picture = load_image(info.png)
    return (ExportSource(picture=picture, header=None if header is None else dcmread(io.BytesIO(header))),
            ExportMap(relevancy=relevancy, regions=tuple(regions), method=method, description=description,
                      stand_in=source.start.model.stand_in))


def dicom_of(source: AnalysisSource, request: AnalyzeRequest) -> DicomResult:
    """The token's map of every image of a study as DICOM, in one zip (export/dicom.py)."""
    from medviz_core.export.dicom import export_zip

    index = request.index
    images = [(info.label, *export_token_map(source, index, index, request.method, image))
              for image, info in enumerate(source.start.images)]  # every image of a study, in its order
    data, names, notes = export_zip(images)
    return DicomResult(zip=data, names=names, notes=notes)
