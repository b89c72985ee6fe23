"""What one analysis request computes from a session's frames: the checks, the job id and the result.

Owns: `AnalysisSource` (the start frame and steps of a live session or a recording, the
recording-only DICOM headers, and where results are recorded), `recording_source`,
`check_request` (refusals that need the session: a token not generated yet, a method it
does not compute, boxes outside their image, a 3D view without a frontal and a lateral),
`job_id` (derived from the request, so equal requests share a job) and `compute`, which
runs the kind (gradient, heads, faithfulness: the model; agreement, volume, dicom: numpy)
and returns its typed result. Maps are used as they travel (decoded from the step frames),
so a live session and its replay give the same numbers. `compute` is blocking torch code
for the model kinds; the server's worker thread runs those. Also `export_token_map`, the
map, regions and picture a DICOM export of one token or a token range takes (the browser's
Export DICOM and `medviz export`). Does not own queueing, caching or replies (server/).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError, MedvizError, RequestError
from .wire.client_frames import AnalyzeRequest
from .wire.codec import QuantMap
from .wire.results import (
    AgreementResult,
    AnalysisFrame,
    AnalysisResult,
    DicomResult,
    FaithfulnessResult,
    GradientResult,
    HeadsResult,
    VolumeResult,
)
from .wire.server_frames import StartFrame, StepFrame

MODEL_KINDS = ("gradient", "heads", "faithfulness")  # need the model (the worker thread); the others are numpy


@dataclass(frozen=True)
class AnalysisSource:
    """The frames an analysis reads: a live session so far, or a recording."""

    key: str  # "session:<id>" or "recording:<id>": jobs are cached per source
    start: StartFrame
    steps: tuple[StepFrame, ...]  # index order, from 0
    recording: Path | None = None  # done results are appended here
    recorded: Mapping[str, bytes] = field(default_factory=dict)  # job id -> a done frame already recorded
    what: str = "session"  # how messages name it
    headers: tuple[bytes | None, ...] = ()  # per image, the source DICOM header (recording-only), if any


def recording_source(name: str, path: Path, recording: Any) -> AnalysisSource:
    """The source of a read recording (recording.Recording with a start frame)."""
    if recording.start is None:
        raise RequestError(f"recording {name!r} is empty")
    source = recording.source
    return AnalysisSource(
        key=f"recording:{name}", start=recording.start, recording=path, what="recording",
        steps=tuple(f.frame for f in recording.steps if isinstance(f.frame, StepFrame)),
        recorded={f.frame.job: f.sent for f in recording.analyses if isinstance(f.frame, AnalysisFrame)},
        headers=() if source is None else source.headers,
    )


def job_id(request: AnalyzeRequest) -> str:
    """`kind-index-hash`: the hash covers what the kind uses (method, steps, boxes)."""
    detail = repr((request.method, request.steps, [(b.label, b.xywh, b.image) for b in request.boxes]))
    return f"{request.kind}-{request.index}-{hashlib.sha1(detail.encode('utf-8')).hexdigest()[:8]}"


def check_request(source: AnalysisSource, request: AnalyzeRequest) -> None:
    """RequestError for a request this source cannot answer."""
    count = len(source.steps)
    if request.index >= count:
        raise RequestError(f"token index {request.index} has not been generated; the {source.what} has "
                           f"{count} token(s) so far")
    start = source.start
    if request.kind in ("faithfulness", "volume", "dicom"):
        if request.method != "gradient" and request.method not in start.methods:
            also = " or gradient" if request.kind == "faithfulness" else ""
            raise RequestError(f"method {request.method!r} is not computed by this {source.what}; expected one of "
                               f"{', '.join(start.methods)}{also}")
    if request.kind == "faithfulness":
        cells = start.model.grid[0] * start.model.grid[1]
        if request.steps < 1:
            raise RequestError(f"faithfulness steps must be at least 1; got {request.steps}")
        if request.steps > cells:
            raise RequestError(f"faithfulness steps must be at most the {cells} grid cells; got {request.steps}")
    if request.kind == "volume" and biplanar_pair(start) is None:
        raise RequestError(f"a 3D view needs one frontal (PA or AP) and one lateral image, by their labels; this "
                           f"{source.what}'s labels are {[image.label for image in start.images]}")
    for box in request.boxes:
        if box.image >= len(start.images):
            raise RequestError(f"box {box.label!r} is on image {box.image}; the {source.what} has {len(start.images)}")
        width, height = start.images[box.image].size
        x, y, w, h = box.xywh
        if x + w > width or y + h > height:
            raise RequestError(f"box {box.label!r} xywh {list(box.xywh)} must lie inside image {box.image} "
                               f"({width}x{height})")


def compute(engine: Any, source: AnalysisSource, request: AnalyzeRequest, cancel: threading.Event) -> AnalysisResult:
    """The typed result of a done job: errors.Cancelled once `cancel` is set, MedvizError for a clear failure."""
    if request.kind == "agreement":
        return _agreement(source, request)
    if request.kind == "volume":
        return _volume(source, request)
    if request.kind == "dicom":
        return _dicom(source, request.index, request.index, request.method)
    from .analysis import gradient_relevancy, layer_head_view

    context, images = _context(engine, source, request.index)
    if request.kind == "gradient":
        return GradientResult.of(gradient_relevancy(engine, context, cancel))
    if request.kind == "heads":
        view = layer_head_view(engine, context, cancel)
        return HeadsResult.of(view.maps, view.image_mass, view.entropy)
    method, result = next(_faithfulness(engine, source, request.index, (request.method,), request.steps, context,
                                        images, cancel))
    return result


def faithfulness_of_token(engine: Any, source: AnalysisSource, index: int, methods: tuple[str, ...], steps: int,
                          cancel: threading.Event) -> Iterator[tuple[str, FaithfulnessResult]]:
    """(method, result) for several methods of one token, in order: the same numbers as one `compute` per
    method, with the random baselines computed once for the token. errors.Cancelled once `cancel` is set."""
    context, images = _context(engine, source, index)
    yield from _faithfulness(engine, source, index, methods, steps, context, images, cancel)


def _context(engine: Any, source: AnalysisSource, index: int) -> tuple[Any, list[np.ndarray]]:
    """The token's context (the session's prompt rebuilt on this engine) and the images as RGB arrays."""
    from .analysis import token_context
    from .imaging import load_image

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


def _faithfulness(engine: Any, source: AnalysisSource, index: int, methods: tuple[str, ...], steps: int,
                  context: Any, images: list[np.ndarray],
                  cancel: threading.Event) -> Iterator[tuple[str, FaithfulnessResult]]:
    """Deletion/insertion on the first image (the others stay as they are in a study)."""
    from .analysis import gradient_relevancy, token_scorer
    from .faithfulness import batch

    grid = source.start.model.grid
    maps = [(index, method, gradient_relevancy(engine, context, cancel)[0] if method == "gradient"
             else source.steps[index].maps[method].values(grid)) for method in methods]
    labels = [image.label for image in source.start.images]
    scorer = token_scorer(engine, context, source.start.question, images, labels, image_index=0)
    for report in batch(images[0], maps, lambda _: scorer, steps=steps, cancel=cancel):
        yield report.method, FaithfulnessResult.of(report.method, report.deletion, report.insertion,
                                                   report.random_deletion, report.random_insertion)


def _agreement(source: AnalysisSource, request: AnalyzeRequest) -> AgreementResult:
    from .agreement import Box, box_coverage, iou_top_regions, pointing_game

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
    from .biplanar import choose_views

    return choose_views([image.label for image in start.images])


def _volume(source: AnalysisSource, request: AnalyzeRequest) -> VolumeResult:
    from .biplanar import biplanar_volume

    pair = biplanar_pair(source.start)
    assert pair is not None  # check_request refused it otherwise
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

    from .dicom_export import ExportMap, ExportSource
    from .imaging import load_image
    from .regions import find_regions

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


def _dicom(source: AnalysisSource, first: int, last: int, method: str) -> DicomResult:
    from .dicom_export import export_zip

    images = [(info.label, *export_token_map(source, first, last, method, image))
              for image, info in enumerate(source.start.images)]  # every image of a study, in its order
    data, names, notes = export_zip(images)
    return DicomResult(zip=data, names=names, notes=notes)
