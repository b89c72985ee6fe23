"""Agreement of relevancy maps with annotation boxes: pointing game, IoU and box coverage.

Owns: parsing the `labels.csv` box format of `../shared/data/cxr/` into `Box` values, the
per-map scores (`pointing_game`, `iou_top_regions`, `box_coverage`), their summary over a
run's tokens (`agreement_for_steps`) and a plain-text table (`format_report`).
Does not own: computing the maps (maps/relevancy.py, analyses/gradient.py), choosing which boxes belong
to an image (the caller picks the file's row), or showing results (server, browser, CLI).

Geometry (docs/analysis.md): a map of shape (gh, gw) covers the whole image of size
(W, H); cell (r, c) owns pixel rows [r*H//gh, (r+1)*H//gh) and columns [c*W//gw,
(c+1)*W//gw), the same cells analyses/faithfulness.py masks. A box (x, y, w, h) owns pixel
columns [x, x+w) and rows [y, y+h), origin top-left. Every score needs at least one box:
with none, the functions raise RequestError rather than invent a value.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medviz_core.errors import RequestError
from medviz_core.types import METHODS, FloatMap

POINTING_TOLERANCE_PX = 15
"""Zhang et al. 2016 count a hit within 15 pixels of the annotation."""

TOP_PERCENTILE = 85.0
"""Cells strictly above this percentile of the map form its top regions."""

BoolMask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Box:
    """One annotation box in pixel coordinates of the stored image, origin top-left."""

    label: str
    kind: str
    x: int
    y: int
    w: int
    h: int
    image_width: int
    image_height: int

    def normalized(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) as fractions (0..1) of the image's width and height."""
        width, height = self.image_width, self.image_height
        return (self.x / width, self.y / height, self.w / width, self.h / height)


# ---------------------------------------------------------------- labels.csv


def load_boxes(labels_csv: Path) -> dict[str, list[Box]]:
    """File name -> its boxes (possibly none) for every row of a labels.csv.

    Rows are numbered from 1 after the header line; errors name the row and the problem.
    """
    try:
        text = labels_csv.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RequestError(f"could not read labels file {labels_csv}: {error}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"file", "width", "height", "boxes"} - set(reader.fieldnames or ())
    if missing:
        raise RequestError(f"{labels_csv.name}: expected columns file, width, height, boxes; missing {sorted(missing)}")
    boxes: dict[str, list[Box]] = {}
    for row_number, row in enumerate(reader, start=1):
        try:
            name = _text(row, "file")
            if name in boxes:
                raise RequestError(f"file '{name}' appears in more than one row")
            boxes[name] = _row_boxes(row)
        except RequestError as error:
            raise RequestError(f"{labels_csv.name} row {row_number}: {error.message}") from None
    return boxes


def _text(row: Mapping[str, str | None], column: str) -> str:
    value = row.get(column)
    if not value:
        raise RequestError(f"column '{column}' is empty")
    return value


def _row_boxes(row: Mapping[str, str | None]) -> list[Box]:
    width, height = (_positive_int(_text(row, name), name) for name in ("width", "height"))
    try:
        items = json.loads(_text(row, "boxes"))
    except json.JSONDecodeError as error:
        raise RequestError(f"column 'boxes' is not valid JSON ({error.msg} at char {error.pos})") from None
    if not isinstance(items, list):
        raise RequestError(f"column 'boxes' must be a JSON list; got {type(items).__name__}")
    return [_box(item, i, width, height) for i, item in enumerate(items)]


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RequestError(f"column '{name}' must be a positive integer; got {text!r}") from None
    if value <= 0:
        raise RequestError(f"column '{name}' must be a positive integer; got {value}")
    return value


def _box(item: Any, index: int, width: int, height: int) -> Box:
    where = f"box {index}"
    if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not isinstance(item.get("kind"), str):
        raise RequestError(f"{where} must be an object with string 'label' and 'kind'; got {item!r}")
    xywh = item.get("xywh")
    if not isinstance(xywh, list) or len(xywh) != 4 or not all(_is_integral(v) for v in xywh):
        raise RequestError(f"{where} 'xywh' must be a list of 4 integer pixel values; got {xywh!r}")
    x, y, w, h = (int(v) for v in xywh)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise RequestError(f"{where} xywh {[x, y, w, h]} must have w, h > 0 and lie inside the {width}x{height} image")
    return Box(item["label"], item["kind"], x, y, w, h, width, height)


def _is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


# ---------------------------------------------------------------- scores


def pointing_game(relevancy: FloatMap, boxes: Sequence[Box], image_size: tuple[int, int],
                  tolerance_px: float = POINTING_TOLERANCE_PX) -> bool:
    """Whether the map's peak cell centre falls inside a box grown by `tolerance_px` on every side.

    The peak is the first maximum in raster order (np.argmax). Cell (r, c)'s centre in
    image pixels is ((c + 0.5) / gw * W, (r + 0.5) / gh * H); a box grown by t covers
    x - t <= px <= x + w + t and y - t <= py <= y + h + t (edges included).
    """
    grid = _check_map(relevancy)
    width, height = _check_boxes(boxes, image_size)
    row, col = divmod(int(np.argmax(relevancy)), grid[1])
    px, py = (col + 0.5) / grid[1] * width, (row + 0.5) / grid[0] * height
    t = tolerance_px
    return any(b.x - t <= px <= b.x + b.w + t and b.y - t <= py <= b.y + b.h + t for b in boxes)


def top_region_mask(relevancy: FloatMap, image_size: tuple[int, int], percentile: float = TOP_PERCENTILE) -> BoolMask:
    """(H, W) mask of the cells strictly above the map's percentile (np.percentile, linear).

    Upsampled by nearest cell, pixel-exact, no interpolation. A constant map has no cell
    above its percentile, so its mask is empty.
    """
    grid = _check_map(relevancy)
    if not 0.0 <= percentile < 100.0:
        raise RequestError(f"percentile must be in [0, 100); got {percentile}")
    cells = relevancy > np.percentile(relevancy, percentile)  # [gh, gw]
    width, height = image_size
    rows = (np.arange(height) * grid[0]) // height  # cell row of each pixel row
    cols = (np.arange(width) * grid[1]) // width
    mask: BoolMask = cells[rows[:, None], cols[None, :]]
    return mask


def boxes_mask(boxes: Sequence[Box], image_size: tuple[int, int]) -> BoolMask:
    """(H, W) mask of the union of the boxes."""
    width, height = _check_boxes(boxes, image_size)
    mask = np.zeros((height, width), dtype=np.bool_)
    for b in boxes:
        mask[b.y : b.y + b.h, b.x : b.x + b.w] = True
    return mask


def iou_top_regions(relevancy: FloatMap, boxes: Sequence[Box], image_size: tuple[int, int],
                    percentile: float = TOP_PERCENTILE) -> float:
    """Intersection over union, in pixels, of the top-region mask and the union of the boxes."""
    top, annotated = top_region_mask(relevancy, image_size, percentile), boxes_mask(boxes, image_size)
    return _overlap(top, annotated)[0]


def box_coverage(relevancy: FloatMap, boxes: Sequence[Box], image_size: tuple[int, int],
                 percentile: float = TOP_PERCENTILE) -> float:
    """Share of the boxes' (union) area that the top-region mask covers."""
    top, annotated = top_region_mask(relevancy, image_size, percentile), boxes_mask(boxes, image_size)
    return _overlap(top, annotated)[1]


def _overlap(top: BoolMask, annotated: BoolMask) -> tuple[float, float]:
    """(IoU, coverage of `annotated`); `annotated` is never empty, so neither divides by zero."""
    inter = int(np.count_nonzero(top & annotated))
    return inter / int(np.count_nonzero(top | annotated)), inter / int(np.count_nonzero(annotated))


def _check_map(relevancy: FloatMap) -> tuple[int, int]:
    if relevancy.ndim != 2 or relevancy.size == 0:
        raise RequestError(f"a relevancy map must be a non-empty (grid_h, grid_w) array; got shape {relevancy.shape}")
    if not np.all(np.isfinite(relevancy)):
        raise RequestError("a relevancy map must hold finite values; got NaN or infinity")
    return (int(relevancy.shape[0]), int(relevancy.shape[1]))


def _check_boxes(boxes: Sequence[Box], image_size: tuple[int, int]) -> tuple[int, int]:
    if not boxes:
        raise RequestError("agreement needs at least one annotation box; got none")
    width, height = image_size
    for b in boxes:
        if (b.image_width, b.image_height) != (width, height):
            raise RequestError(
                f"box '{b.label}' belongs to a {b.image_width}x{b.image_height} image; got image size {width}x{height}"
            )
    return width, height


# ---------------------------------------------------------------- summaries


@dataclass(frozen=True)
class MethodAgreement:
    """One method's scores over the tokens that carried its map (token indices in `tokens`)."""

    method: str
    tokens: tuple[int, ...]
    hits: tuple[bool, ...]
    ious: tuple[float, ...]
    coverages: tuple[float, ...]

    @property
    def hit_rate(self) -> float:
        return sum(self.hits) / len(self.hits)

    @property
    def mean_iou(self) -> float:
        return math.fsum(self.ious) / len(self.ious)

    @property
    def mean_coverage(self) -> float:
        return math.fsum(self.coverages) / len(self.coverages)


@dataclass(frozen=True)
class Agreement:
    """Agreement of every method's maps over a run's tokens with one image's boxes."""

    image_size: tuple[int, int]
    boxes: tuple[Box, ...]
    methods: tuple[MethodAgreement, ...]  # METHODS order first, then other names sorted


def agreement_for_steps(steps: Sequence[Mapping[str, FloatMap]], boxes: Sequence[Box],
                        image_size: tuple[int, int], tolerance_px: float = POINTING_TOLERANCE_PX,
                        percentile: float = TOP_PERCENTILE) -> Agreement:
    """Scores per method over `steps` (each token's method -> map, e.g. `[s.maps for s in run]`)."""
    if not steps:
        raise RequestError("agreement needs at least one token's maps; got none")
    _check_boxes(boxes, image_size)
    names = {name for maps in steps for name in maps}
    ordered = [m for m in METHODS if m in names] + sorted(names - set(METHODS))
    annotated = boxes_mask(boxes, image_size)
    results = []
    for method in ordered:
        tokens = tuple(i for i, maps in enumerate(steps) if method in maps)
        hits, overlaps = [], []
        for i in tokens:
            relevancy = steps[i][method]
            hits.append(pointing_game(relevancy, boxes, image_size, tolerance_px))
            overlaps.append(_overlap(top_region_mask(relevancy, image_size, percentile), annotated))
        results.append(MethodAgreement(method=method, tokens=tokens, hits=tuple(hits),
                                       ious=tuple(o[0] for o in overlaps), coverages=tuple(o[1] for o in overlaps)))
    return Agreement(image_size=image_size, boxes=tuple(boxes), methods=tuple(results))


def format_report(agreement: Agreement, title: str = "") -> str:
    """A plain-text table: one line per method with tokens, hit rate, mean IoU, mean coverage."""
    width, height = agreement.image_size
    labels = ", ".join(b.label for b in agreement.boxes)
    lines = [title] if title else []
    lines.append(f"image {width}x{height}, boxes: {labels}")
    lines.append(f"{'method':<16} {'tokens':>6} {'hit rate':>8} {'mean IoU':>8} {'coverage':>8}")
    for m in agreement.methods:
        lines.append(f"{m.method:<16} {len(m.tokens):>6} {m.hit_rate:>8.3f} {m.mean_iou:>8.3f} {m.mean_coverage:>8.3f}")
    return "\n".join(lines) + "\n"
