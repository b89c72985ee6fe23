"""What one analysis job computes, from a session's frames: the checks, the job id and the result.

Owns: `AnalysisSource` (the start frame and steps of a live session or a recording, and
where its results are recorded), `check_request` (refusals that need the session: a token
not generated yet, a method it does not compute, boxes outside their image), `job_id`
(derived from the request, so equal requests share a job) and `compute`, which calls
medviz_core.analysis / faithfulness / agreement and returns the result map of frames.py.
Analysis of a method's map uses the map as it travels (decoded from the step frame), so a
live session and its replay agree. `compute` is blocking torch code: the worker thread
runs it. Does not own queueing, caching or replies (analysis_jobs.py).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from medviz_core import frames
from medviz_core.errors import MedvizError, RequestError
from medviz_core.frame_types import AnalyzeRequest, StartFrame, StepFrame


@dataclass(frozen=True)
class AnalysisSource:
    """The frames an analysis reads: a live session so far, or a recording."""

    key: str  # "session:<id>" or "recording:<id>": jobs are cached per source
    start: StartFrame
    steps: tuple[StepFrame, ...]  # index order, from 0
    recording: Path | None = None  # done results are appended here
    recorded: Mapping[str, bytes] = field(default_factory=dict)  # job id -> a done frame already recorded
    what: str = "session"  # how messages name it


def recording_source(name: str, path: Path, recording: Any) -> AnalysisSource:
    """The source of a read recording (medviz_core.recording.Recording with a start frame)."""
    from medviz_core.frame_types import AnalysisFrame

    if recording.start is None:
        raise RequestError(f"recording {name!r} is empty")
    return AnalysisSource(
        key=f"recording:{name}", start=recording.start, recording=path, what="recording",
        steps=tuple(f.frame for f in recording.steps if isinstance(f.frame, StepFrame)),
        recorded={f.frame.job: f.data for f in recording.analyses if isinstance(f.frame, AnalysisFrame)},
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
    images = source.start.images
    if request.kind == "faithfulness":
        if request.method != "gradient" and request.method not in source.start.methods:
            raise RequestError(f"method {request.method!r} is not computed by this {source.what}; expected one of "
                               f"{', '.join(source.start.methods)} or gradient")
        cells = source.start.model.grid[0] * source.start.model.grid[1]
        if request.steps < 1:
            raise RequestError(f"faithfulness steps must be at least 1; got {request.steps}")
        if request.steps > cells:
            raise RequestError(f"faithfulness steps must be at most the {cells} grid cells; got {request.steps}")
    for box in request.boxes:
        if box.image >= len(images):
            raise RequestError(f"box {box.label!r} is on image {box.image}; the {source.what} has {len(images)}")
        width, height = images[box.image].size
        x, y, w, h = box.xywh
        if x + w > width or y + h > height:
            raise RequestError(f"box {box.label!r} xywh {list(box.xywh)} must lie inside image {box.image} "
                               f"({width}x{height})")


def compute(engine: Any, source: AnalysisSource, request: AnalyzeRequest,
            cancel: threading.Event) -> dict[str, Any] | None:
    """The result map of a done job, or None when cancelled. MedvizError for a clear failure."""
    if request.kind == "agreement":
        return _agreement(source, request)
    from medviz_core.analysis import gradient_relevancy, layer_head_view
    from medviz_core.capture import Cancelled

    context, images = _context(engine, source, request.index)
    try:
        if request.kind == "gradient":
            return frames.gradient_result(gradient_relevancy(engine, context, cancel))
        if request.kind == "heads":
            view = layer_head_view(engine, context)
            return frames.heads_result(view.maps, view.image_mass, view.entropy)
        results = list(_faithfulness(engine, source, request.index, (request.method,), request.steps, context,
                                     images, cancel))
        return results[0][1] if results else None
    except Cancelled:
        return None


def faithfulness_of_token(engine: Any, source: AnalysisSource, index: int, methods: tuple[str, ...], steps: int,
                          cancel: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
    """(method, result map) for several methods of one token, in order: the same numbers as one
    `compute` per method, with the random baselines computed once for the token. Stops when cancelled."""
    from medviz_core.capture import Cancelled

    context, images = _context(engine, source, index)
    try:
        yield from _faithfulness(engine, source, index, methods, steps, context, images, cancel)
    except Cancelled:
        return


def _context(engine: Any, source: AnalysisSource, index: int) -> tuple[Any, list[np.ndarray]]:
    """The token's context (the session's prompt rebuilt on this engine) and the images as RGB arrays."""
    from medviz_core.analysis import token_context
    from medviz_core.imaging import load_image

    start = source.start
    images = [load_image(image.png) for image in start.images]
    labels = [image.label for image in start.images]
    context = token_context(engine, images, start.question, [s.token_id for s in source.steps], index, labels)
    rebuilt = tuple(int(t) for t in context.inputs["input_ids"][0].tolist())
    if rebuilt != start.token_ids:
        raise MedvizError(f"the {source.what}'s prompt could not be rebuilt on model {engine.facts.name} "
                          f"(recorded with {start.model.name})")
    return context, images


def _faithfulness(engine: Any, source: AnalysisSource, index: int, methods: tuple[str, ...], steps: int,
                  context: Any, images: list[np.ndarray],
                  cancel: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
    """Deletion/insertion on the first image (the others stay as they are in a study)."""
    from medviz_core.analysis import gradient_relevancy, token_scorer
    from medviz_core.faithfulness import batch

    grid = source.start.model.grid
    maps = [(index, method, gradient_relevancy(engine, context, cancel)[0] if method == "gradient"
             else source.steps[index].maps[method].values(grid)) for method in methods]
    labels = [image.label for image in source.start.images]
    scorer = token_scorer(engine, context, source.start.question, images, labels, image_index=0)
    for report in batch(images[0], maps, lambda _: scorer, steps=steps, cancel=cancel):
        yield report.method, frames.faithfulness_result(report.method, report.deletion, report.insertion,
                                                        report.random_deletion, report.random_insertion)


def _agreement(source: AnalysisSource, request: AnalyzeRequest) -> dict[str, Any]:
    from medviz_core.agreement import Box, box_coverage, iou_top_regions, pointing_game

    image = request.boxes[0].image
    size = source.start.images[image].size
    boxes = [Box(b.label, "box", *b.xywh, size[0], size[1]) for b in request.boxes]
    scores = {}
    for method, quant in source.steps[request.index].image_maps(image).items():
        values = quant.values(source.start.model.grid)
        scores[method] = (pointing_game(values, boxes, size), iou_top_regions(values, boxes, size),
                          box_coverage(values, boxes, size))
    return frames.agreement_result(scores, image)
