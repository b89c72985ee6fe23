"""Pixels for the DICOM export: a map at image resolution, the overlay picture, region masks.

Owns: the geometry that puts a (grid_h, grid_w) relevancy map on an (H, W) image
(`cell_edges`, `map_to_pixels`), the overlay a Secondary Capture shows (`render_overlay`:
X-ray + viridis heatmap + region outlines) and the rasterised region masks a Segmentation
stores (`region_masks`). Pure numpy + OpenCV. Does not own: checking its inputs (the
callers in export/dicom.py do that), DICOM attributes, or writing files.

Geometry: the model resizes the whole image to a square, aspect not kept, so map cell
(r, c) of a (gh, gw) map covers pixel rows [r*H//gh, (r+1)*H//gh) and columns
[c*W//gw, (c+1)*W//gw) of the whole (H, W) image. Every pixel of a cell's block gets the
cell's value: no interpolation, so values read back from a DICOM object are the map's own.
Regions are in normalised coordinates (0..1, origin top-left, x right, y down): vertex
(x, y) is the point (x*W, y*H) in pixel units, where pixel (i, j) spans [j, j+1) x [i, i+1).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from medviz_core.maps.regions import minmax
from medviz_core.types import FloatMap, Region

RGBImage = npt.NDArray[np.uint8]  # (H, W, 3) RGB
Mask = npt.NDArray[np.bool_]  # (H, W)

ALPHA = 0.6
"""Heatmap opacity at the map's maximum; opacity falls linearly to 0 at its minimum."""

OUTLINE_RGB = (255, 255, 255)
"""Region outline colour."""

_SUBPIXEL_BITS = 4  # cv2.polylines takes fixed-point vertices with this many fraction bits


def _viridis_table() -> RGBImage:
    """OpenCV's viridis as a 256-entry RGB table, built once (index = 8-bit value)."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)
    table: RGBImage = np.ascontiguousarray(bgr[:, 0, ::-1])
    return table


VIRIDIS = _viridis_table()
"""(256, 3) uint8 RGB: VIRIDIS[v] is the colour of normalised value v / 255."""


def cell_edges(pixels: int, cells: int) -> npt.NDArray[np.int64]:
    """The cells + 1 pixel edges k * pixels // cells: cell k covers [edges[k], edges[k+1])."""
    return np.arange(cells + 1, dtype=np.int64) * pixels // cells


def map_to_pixels(relevancy: FloatMap, height: int, width: int) -> FloatMap:
    """The map at (height, width): each pixel holds the value of the cell whose block covers it."""
    grid_h, grid_w = relevancy.shape
    rows = np.repeat(np.arange(grid_h), np.diff(cell_edges(height, grid_h)))
    cols = np.repeat(np.arange(grid_w), np.diff(cell_edges(width, grid_w)))
    full: FloatMap = np.ascontiguousarray(relevancy[rows][:, cols], dtype=np.float32)
    return full


def render_overlay(picture: RGBImage, relevancy: FloatMap, regions: Sequence[Region]) -> RGBImage:
    """The picture with the heatmap blended over it and each region's polygon outlined.

    1. The map is min-max normalised to v in 0..1 (all zeros for a constant map) and put
       on the picture's pixels block by block (`map_to_pixels`).
    2. colour = VIRIDIS[round(255 v)]; out = round((1 - a) * picture + a * colour) with
       a = ALPHA * v, so low attention leaves the X-ray as it was.
    3. Each region's polygon is drawn closed in OUTLINE_RGB, 8-connected, no antialiasing,
       about 1 pixel per 300 of the shorter side thick.
    """
    height, width = picture.shape[:2]
    value = map_to_pixels(minmax(relevancy), height, width)[..., np.newaxis]
    colour = VIRIDIS[np.rint(value[..., 0] * 255).astype(np.uint8)].astype(np.float32)
    alpha = np.float32(ALPHA) * value
    blended = (1 - alpha) * picture.astype(np.float32) + alpha * colour
    out: RGBImage = np.ascontiguousarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    thickness = max(1, round(min(height, width) / 300))
    scale = 1 << _SUBPIXEL_BITS
    for region in regions:
        # Vertex (x, y) -> OpenCV's pixel-centre coordinates (x*W - 0.5, y*H - 0.5), fixed point.
        points = np.array([((x * width - 0.5) * scale, (y * height - 0.5) * scale) for x, y in region.polygon])
        cv2.polylines(out, [np.rint(points).astype(np.int32)], True, OUTLINE_RGB, thickness, cv2.LINE_8, _SUBPIXEL_BITS)
    return out


def region_masks(regions: Sequence[Region], height: int, width: int) -> npt.NDArray[np.bool_]:
    """(len(regions), height, width): pixel (i, j) is in a region when its centre
    ((j + 0.5) / W, (i + 0.5) / H) lies inside the region's polygon (even-odd rule)."""
    masks = np.zeros((len(regions), height, width), dtype=bool)
    for index, region in enumerate(regions):
        masks[index] = _polygon_mask(region.polygon, height, width)
    return masks


def _polygon_mask(polygon: Sequence[tuple[float, float]], height: int, width: int) -> Mask:
    """Even-odd point-in-polygon test of every pixel centre in the polygon's bounding box."""
    mask = np.zeros((height, width), dtype=bool)
    xs = np.array([x for x, _ in polygon], dtype=np.float64) * width
    ys = np.array([y for _, y in polygon], dtype=np.float64) * height
    col0, col1 = max(0, int(np.floor(xs.min()))), min(width, int(np.ceil(xs.max())) + 1)
    row0, row1 = max(0, int(np.floor(ys.min()))), min(height, int(np.ceil(ys.max())) + 1)
    if col0 >= col1 or row0 >= row1:
        return mask
    px = np.arange(col0, col1, dtype=np.float64)[np.newaxis, :] + 0.5  # [1, box_w]
    py = np.arange(row0, row1, dtype=np.float64)[:, np.newaxis] + 0.5  # [box_h, 1]
    inside = np.zeros((row1 - row0, col1 - col0), dtype=bool)
    for k in range(len(xs)):
        x_a, y_a, x_b, y_b = xs[k], ys[k], xs[k - 1], ys[k - 1]
        if y_a == y_b:
            continue  # a horizontal edge crosses no horizontal ray
        spans = (y_a > py) != (y_b > py)  # [box_h, 1]: the edge spans this row's centre
        crossing_x = x_a + (py - y_a) * (x_b - x_a) / (y_b - y_a)  # [box_h, 1]
        inside ^= spans & (px < crossing_x)
    mask[row0:row1, col0:col1] = inside
    return mask
