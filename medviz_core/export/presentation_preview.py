"""medviz's own rendering of a Grayscale Softcopy Presentation State on its source image.

Owns: `render_preview`, a picture of what a GSPS-aware viewer shows, read back from the
GSPS dataset alone (not from the regions it was made of): the source's pixels through the
GSPS's Modality LUT (rescale), Softcopy VOI LUT (window; identity over the stored bit depth
when it has none) and Presentation LUT shape (INVERSE flips), then every graphic object
(POLYLINE, POINT, CIRCLE) and text object of its annotations in its layer's recommended
CIELab colour. For docs and tests; PIXEL units only. Does not own: building the GSPS
(export/presentation_state.py) or reading files.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from medviz_core.errors import ExportError

FALLBACK_RGB = (255, 255, 0)
"""The colour of a layer that recommends none."""


def render_preview(source: Dataset, gsps: Dataset, width: int | None = None) -> Image.Image:
    """The source image (with Pixel Data) displayed as `gsps` says, `width` pixels wide (default: Columns)."""
    rows, columns = int(source.Rows), int(source.Columns)
    scale = (width or columns) / columns
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    gray = np.rint(_displayed(source, gsps) * 255).astype(np.uint8)
    picture = Image.fromarray(gray, mode="L").resize(size, Image.Resampling.LANCZOS).convert("RGB")
    draw = ImageDraw.Draw(picture)
    colours = {str(layer.GraphicLayer): _layer_rgb(layer) for layer in gsps.get("GraphicLayerSequence", [])}
    line = max(1, round(min(size) / 300))
    for annotation in gsps.get("GraphicAnnotationSequence", []):
        colour = colours.get(str(annotation.GraphicLayer), FALLBACK_RGB)
        for graphic in annotation.get("GraphicObjectSequence", []):
            _draw_graphic(draw, graphic, scale, colour, line)
        for text in annotation.get("TextObjectSequence", []):
            _draw_text(draw, text, scale, colour)
    return picture


def _displayed(source: Dataset, gsps: Dataset) -> npt.NDArray[np.float64]:
    """The source's pixels as presentation values 0..1 through the GSPS's LUTs."""
    values = np.asarray(source.pixel_array, dtype=np.float64)
    if values.ndim != 2:
        raise ExportError(f"the preview draws one grayscale frame; the source's pixels are {values.shape}")
    bits = int(source.get("BitsStored", 8))
    low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if source.get("PixelRepresentation") == 1 \
        else (0.0, 2.0**bits - 1)
    if "RescaleSlope" in gsps:
        slope, intercept = float(gsps.RescaleSlope), float(gsps.RescaleIntercept)
        values = values * slope + intercept
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    voi = gsps.get("SoftcopyVOILUTSequence", [])
    if voi and "WindowCenter" in voi[0]:
        centre, window = float(voi[0].WindowCenter), float(voi[0].WindowWidth)
        shown = np.clip((values - (centre - 0.5)) / max(window - 1, 1e-9) + 0.5, 0, 1)
    else:
        shown = np.clip((values - low) / max(high - low, 1e-9), 0, 1)
    return 1 - shown if gsps.get("PresentationLUTShape") == "INVERSE" else shown


def _layer_rgb(layer: Dataset) -> tuple[int, int, int]:
    """The layer's recommended CIELab colour (DICOM's 16-bit encoding) as 8-bit RGB."""
    if "GraphicLayerRecommendedDisplayCIELabValue" not in layer:
        return FALLBACK_RGB
    code = [float(v) for v in layer.GraphicLayerRecommendedDisplayCIELabValue]
    lab = np.array([[[code[0] * 100 / 65535, code[1] * 255 / 65535 - 128, code[2] * 255 / 65535 - 128]]],
                   dtype=np.float32)
    rgb = np.clip(np.rint(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)[0, 0] * 255), 0, 255).astype(int)
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def _points(values: object, units: str, scale: float) -> list[tuple[float, float]]:
    """(column, row) pairs in PIXEL units (0 = the first pixel's outer edge) as Pillow's pixel-centre coordinates."""
    if units != "PIXEL":
        raise ExportError(f"the preview draws PIXEL-unit annotations only; got {units}")
    flat = [float(v) for v in values]  # type: ignore[attr-defined]
    return [(flat[k] * scale - 0.5, flat[k + 1] * scale - 0.5) for k in range(0, len(flat), 2)]


def _draw_graphic(draw: ImageDraw.ImageDraw, graphic: Dataset, scale: float, colour: tuple[int, int, int],
                  line: int) -> None:
    points = _points(graphic.GraphicData, str(graphic.GraphicAnnotationUnits), scale)
    kind = str(graphic.GraphicType)
    if kind == "POLYLINE":
        draw.line(points, fill=colour, width=line, joint="curve")
    elif kind == "POINT":
        (x, y), r = points[0], 1.5 * line
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif kind == "CIRCLE":
        (x, y), (u, v) = points
        r = float(np.hypot(u - x, v - y))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=line)
    else:
        raise ExportError(f"the preview draws POLYLINE, POINT and CIRCLE graphics; got {kind}")


def _draw_text(draw: ImageDraw.ImageDraw, text: Dataset, scale: float, colour: tuple[int, int, int]) -> None:
    (left, top), (_, bottom) = _points([*text.BoundingBoxTopLeftHandCorner, *text.BoundingBoxBottomRightHandCorner],
                                       str(text.BoundingBoxAnnotationUnits), scale)
    font = ImageFont.load_default(size=max(8, round((bottom - top) * 0.7)))
    draw.text((left, top), str(text.UnformattedTextValue), fill=colour, font=font,
              stroke_width=max(1, round((bottom - top) / 16)), stroke_fill=(0, 0, 0))
