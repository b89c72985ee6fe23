"""Per-step statistics, high-attention regions, zones and display contrast helpers.

Owns: the "Statistics per step" and "Display contrast" of docs/relevancy.md —
entropy, peak, peak zone and regions of one (grid_h, grid_w) map (`compute_stats`,
`find_regions`, `zone_of`) and the contrast helpers the original visualizer applied before
drawing (`percentile_contrast`, `log_contrast`, and `minmax`, which the consensus uses too).
Pure numpy + OpenCV on the CPU. Does not own: computing the maps (maps/relevancy.py), the
attention share on the image (`image_mass` is passed in by the engine) or how anything is
drawn (wire/, web/).

Conventions:
- Normalised image coordinates run 0..1 with the origin at the image's top-left, x to the
  right, y down; the grid covers the whole image, so cell (r, c) spans
  x in [c / gw, (c + 1) / gw) and y in [r / gh, (r + 1) / gh) whatever the aspect.
- Zones are radiological: the patient's right is the image's left.
- Negative and non-finite map values carry no mass: they are read as 0 for entropy, regions
  and mass. The peak is taken on the map itself (non-finite values read as 0).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, overload

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

from medviz_core.errors import RequestError
from medviz_core.types import ZONES, FloatMap, Region, StepStats

WORK_SIDE = 256
"""Longer side, in pixels, of the working raster regions are found on (aspect = the image's)."""

MAX_VERTICES = 24
"""A region's polygon is simplified until it has at most this many vertices."""

Float64Map = npt.NDArray[np.float64]



def compute_stats(consensus: FloatMap, image_size: tuple[int, int]) -> StepStats:
    """The statistics of one step's map (usually the consensus).

    `image_size` is (width, height) of the image as it went into the processor. The
    entropy is that of p = max(x, 0) / sum(max(x, 0)) (a uniform p when that sum is 0), in
    bits, and divided by log2(N) (0 for a one-cell map). The peak is the (row, col) of the
    first maximum in np.argmax order; its zone is that of the peak cell's centre.
    """
    grid = _as_grid(consensus)
    bits = _entropy_bits(_nonnegative(grid))
    n = grid.size
    rows, cols = grid.shape
    row, col = (int(i) for i in np.unravel_index(int(np.argmax(_finite(grid))), grid.shape))
    return StepStats(
        entropy_bits=bits,
        entropy_norm=bits / math.log2(n) if n > 1 else 0.0,
        peak=(row, col),
        peak_zone=zone_of((col + 0.5) / cols, (row + 0.5) / rows),
        regions=find_regions(consensus, image_size),
    )


def find_regions(
    consensus: FloatMap,
    image_size: tuple[int, int],
    *,
    percentile: float = 85,
    min_area: float = 0.01,
    keep: int = 3,
) -> tuple[Region, ...]:
    """The `keep` high-attention regions of a map with the most mass, most first.

    1. The map (negatives read as 0) is resized with cv2.INTER_LINEAR to a working raster
       of the image's aspect whose longer side is WORK_SIDE pixels (`working_size`).
    2. Pixels strictly above the `percentile`-th percentile of that raster are foreground,
       so a constant map (and any map whose top share is flat) gives no regions.
    3. External contours of the foreground (cv2.RETR_EXTERNAL); a region is a contour's
       filled interior, holes included. Regions covering under `min_area` of the raster's
       pixels are dropped.
    4. mass = the raster's sum inside the region / the raster's total sum; the zone is that
       of the mass-weighted centre; the box is the pixel extent (x, y, width, height) and
       the polygon the contour through pixel centres, simplified with cv2.approxPolyDP to
       at most MAX_VERTICES vertices; all in normalised image coordinates.
    Ties in mass keep OpenCV's contour order.
    """
    grid = _as_grid(consensus)
    width, height = working_size(image_size)
    source = _nonnegative(grid)
    if source.max() <= source.min():  # flat: resizing could only add rounding noise
        return ()
    resized = cv2.resize(source.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    raster: Float64Map = np.asarray(resized, dtype=np.float64)
    np.maximum(raster, 0.0, out=raster)
    total = float(raster.sum())
    mask = (raster > np.percentile(raster, percentile)).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    measured = [(contour, region) for contour in contours
                if (region := _measure(contour, raster, total, min_area)) is not None]
    measured.sort(key=lambda pair: pair[1].mass, reverse=True)
    height, width = raster.shape  # polygons only for the regions kept
    return tuple(replace(region, polygon=_polygon(contour, width, height)) for contour, region in measured[:keep])


def working_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the working raster: longer side WORK_SIDE, the image's aspect."""
    width, height = image_size
    if not (isinstance(width, int) and isinstance(height, int)) or width < 1 or height < 1:
        raise RequestError(f"image_size must be (width, height) of positive ints; got {image_size!r}")
    if width >= height:
        return WORK_SIDE, max(1, round(WORK_SIDE * height / width))
    return max(1, round(WORK_SIDE * width / height)), WORK_SIDE


def zone_of(x: float, y: float) -> str:
    """The 3 x 3 zone of a point in normalised image coordinates, radiological convention.

    x < 1/3 is the patient's "right" (the image's left), x > 2/3 "left", else "central";
    y < 1/3 "upper", y > 2/3 "lower", else "middle". Points on a boundary go to the middle
    band. Values outside 0..1 fall in the outer bands.
    """
    return ZONES[3 * _band(y) + _band(x)]


def percentile_contrast(x: npt.ArrayLike) -> FloatMap:
    """Clip to the 5th..95th percentile and scale that range to 0..1 (zeros when it is empty)."""
    values = np.asarray(x, dtype=np.float64)
    low, high = np.percentile(values, [5, 95])
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled: FloatMap = np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return scaled


def log_contrast(x: npt.ArrayLike) -> FloatMap:
    """log(x + 1e-8), then min-max to 0..1. Negative values are read as 0 first."""
    values = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    return minmax(np.log(values + 1e-8))


@overload
def minmax(x: npt.ArrayLike) -> FloatMap: ...


@overload
def minmax(x: npt.ArrayLike, dtype: type[np.float64]) -> Float64Map: ...


def minmax(x: npt.ArrayLike, dtype: type[np.float32] | type[np.float64] = np.float32) -> npt.NDArray[Any]:
    """Scale linearly so the minimum is 0 and the maximum 1; zeros when x is constant.

    Worked in float64; returned as float32 for display, or float64 where the consensus averages the maps.
    """
    values = np.asarray(x, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros(values.shape, dtype=dtype)
    return ((values - low) / (high - low)).astype(dtype, copy=False)


def _measure(contour: MatLike, raster: Float64Map, total: float, min_area: float) -> Region | None:
    """One contour -> its Region without the polygon yet, or None when its filled interior is under `min_area`."""
    height, width = raster.shape
    left, top, box_w, box_h = cv2.boundingRect(contour)
    if box_w * box_h < min_area * width * height:  # the interior lies in its box: too small either way
        return None
    filled = np.zeros((box_h, box_w), dtype=np.uint8)
    cv2.drawContours(filled, [contour], -1, 1, thickness=cv2.FILLED, offset=(-left, -top))
    if cv2.countNonZero(filled) < min_area * width * height:
        return None
    weights = raster[top : top + box_h, left : left + box_w] * filled  # the raster inside, 0 outside
    weight = float(weights.sum())
    xs = np.arange(left, left + box_w, dtype=np.float64) + 0.5  # pixel centres, broadcast over rows and columns
    ys = np.arange(top, top + box_h, dtype=np.float64)[:, None] + 0.5
    centre_x = float((weights * xs).sum()) / weight / width
    centre_y = float((weights * ys).sum()) / weight / height
    return Region(
        polygon=(),
        box=(left / width, top / height, box_w / width, box_h / height),
        mass=weight / total,
        zone=zone_of(centre_x, centre_y),
    )


def _polygon(contour: MatLike, width: int, height: int) -> tuple[tuple[float, float], ...]:
    """The contour simplified to at most MAX_VERTICES points, through pixel centres, normalised."""
    epsilon = 0.5
    points = cv2.approxPolyDP(contour, epsilon, True)
    while len(points) > MAX_VERTICES:
        epsilon *= 2
        points = cv2.approxPolyDP(contour, epsilon, True)
    return tuple(((float(px) + 0.5) / width, (float(py) + 0.5) / height) for px, py in points.reshape(-1, 2))


def _band(value: float) -> int:
    if value < 1 / 3:
        return 0
    if value > 2 / 3:
        return 2
    return 1


def _as_grid(consensus: FloatMap) -> Float64Map:
    grid = np.asarray(consensus, dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0:
        raise RequestError(f"a relevancy map must be a non-empty 2-D array; got shape {grid.shape}")
    return grid


def _finite(grid: Float64Map) -> Float64Map:
    return np.nan_to_num(grid, nan=0.0, posinf=0.0, neginf=0.0)


def _nonnegative(grid: Float64Map) -> Float64Map:
    return np.maximum(_finite(grid), 0.0)


def _entropy_bits(mass: Float64Map) -> float:
    total = float(mass.sum())
    p = mass / total if total > 0 else np.full(mass.shape, 1.0 / mass.size)
    p = p[p > 0]
    return max(0.0, float(-(p * np.log2(p)).sum()))  # max: no -0.0 for a one-hot map
