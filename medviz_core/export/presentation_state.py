"""The Grayscale Softcopy Presentation State of an export: a switchable overlay on the source image.

Owns: which sources can have one (`grayscale_refusal`: MONOCHROME1/2 only), what it draws
(`region_contour`, `peak_point`, `annotation_lines`) and the object itself
(`presentation_state`, built with highdicom): one graphic layer LAYER referencing the source
image, holding one closed POLYLINE per region, a POINT at the map's peak with a CIRCLE around
it, and one text object per line of `annotation_lines` (the token, the method, that this is
model attention and not a finding, and a stand-in model's note). The display of the image is
the source's own: its rescale (Modality LUT) and first window (Softcopy VOI LUT) when valid,
and an INVERSE presentation LUT for MONOCHROME1 so the image keeps its polarity.
Does not own: checking the inputs (export/dicom.py), the patient and study attributes
(export/header.py), UIDs (export/uids.py) or drawing it (export/presentation_preview.py).

Geometry (PIXEL units, PS3.3 C.10.5.1.2): (0, 0) is the top-left corner of the top-left
pixel and (Columns, Rows) the bottom-right corner of the last one, the same as
export/overlay.py: region vertex (x, y) is the point (x*W, y*H); map cell (r, c) covers
pixels [r*H//gh, (r+1)*H//gh) x [c*W//gw, (c+1)*W//gw) and the peak is the centre of the
block of the map's maximum (the first in row-major order).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import cast

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medviz_core import __version__
from medviz_core.export.header import finish, valid_value
from medviz_core.export.objects import MANUFACTURER, SERIAL_NUMBER, SERIES_NUMBERS
from medviz_core.export.overlay import cell_edges
from medviz_core.export.uids import ExportUIDs
from medviz_core.types import FloatMap, Region

LAYER = "MEDVIZ ATTENTION"
"""The graphic layer's name (CS, at most 16 characters)."""

LAYER_COLOUR = hd.color.CIELabColor(97.1, -21.6, 94.5)
"""The layer's recommended display colour: yellow, seen on dark and bright parts of an X-ray."""

NOT_A_FINDING = "model attention, not a finding"
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
LINE_CHARACTERS = 56
"""A note's longest line: about what the text box (0.96 of the width, 1/24 of the height high) holds."""

Points = npt.NDArray[np.float64]  # (n, 2) (column, row) pairs in PIXEL units


def grayscale_refusal(source: Dataset) -> str:
    """'' when the source can have a GSPS (one sample, MONOCHROME1/2); else the note that says why not."""
    photometric = str(source.get("PhotometricInterpretation", "") or "")
    samples = int(source.get("SamplesPerPixel", 1) or 1)
    if photometric in GRAYSCALE and samples == 1:
        return ""
    shown = f"{photometric!r}" if photometric else "none"
    return (f"no Grayscale Softcopy Presentation State: the source's PhotometricInterpretation is {shown}, "
            f"and a GSPS applies to grayscale (MONOCHROME1/MONOCHROME2) images only")


def region_contour(region: Region, height: int, width: int) -> Points:
    """The region's polygon in PIXEL units, closed: the first point repeated at the end."""
    points = [(x * width, y * height) for x, y in region.polygon]
    return np.array([*points, points[0]], dtype=np.float64)


def peak_point(relevancy: FloatMap, height: int, width: int) -> tuple[float, float]:
    """(column, row) of the centre of the pixel block of the map's maximum cell."""
    row, col = np.unravel_index(int(np.argmax(relevancy)), relevancy.shape)
    rows, cols = cell_edges(height, relevancy.shape[0]), cell_edges(width, relevancy.shape[1])
    return (float(cols[col] + cols[col + 1]) / 2, float(rows[row] + rows[row + 1]) / 2)


def annotation_lines(method: str, description: str, stand_in_note: str = "") -> tuple[str, ...]:
    """The text the overlay shows, one text object each: the token and method, NOT_A_FINDING, and a
    stand-in's note wrapped at LINE_CHARACTERS (viewers draw a text object on one line)."""
    return (f"medviz {method}: {description}", NOT_A_FINDING, *textwrap.wrap(stand_in_note, LINE_CHARACTERS))


def presentation_state(reference: Dataset, source: Dataset, relevancy: FloatMap, regions: Sequence[Region],
                       lines: Sequence[str], label: str, uids: ExportUIDs) -> Dataset:
    """The GSPS on the source image. `reference`: export/header.py's reduced header (identity,
    patient and study); `source`: the source header (photometric interpretation, rescale and
    window); `lines`: `annotation_lines`; `label`: the SeriesDescription and content description."""
    height, width = int(reference.Rows), int(reference.Columns)
    image = _referenced_image(reference, source)
    layer = hd.pr.GraphicLayer(LAYER, order=1, description=f"medviz model attention: {NOT_A_FINDING}"[:64],
                               display_color=LAYER_COLOUR)
    objects = [hd.pr.GraphicObject("POLYLINE", region_contour(r, height, width), "PIXEL") for r in regions]
    peak = np.array([peak_point(relevancy, height, width)])
    radius = max(4.0, min(height, width) / 40)
    rim = peak + (radius if peak[0, 0] + radius <= width else -radius, 0.0)
    objects += [hd.pr.GraphicObject("POINT", peak, "PIXEL"),
                hd.pr.GraphicObject("CIRCLE", np.concatenate([peak, rim]), "PIXEL")]
    texts = [hd.pr.TextObject(line, "PIXEL", bounding_box=_text_box(number, height, width),
                              text_justification="LEFT") for number, line in enumerate(lines)]
    annotation = hd.pr.GraphicAnnotation([image], layer, graphic_objects=objects, text_objects=texts)
    windows = _window(source)
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        [image], uids.series("presentation_state"), SERIES_NUMBERS["presentation_state"],
        uids.instance("presentation_state"), 1, MANUFACTURER, MANUFACTURER, __version__, SERIAL_NUMBER,
        content_label="ATTENTION", content_description=label[:64], graphic_annotations=[annotation],
        graphic_layers=[layer], modality_lut_transformation=_rescale(source),
        voi_lut_transformations=[windows] if windows is not None else None,
        presentation_lut_transformation=hd.PresentationLUTTransformation(
            presentation_lut_shape="INVERSE" if image.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"),
    )  # fmt: skip
    finish(gsps, reference, "presentation_state")
    gsps.SeriesDescription = label
    return cast(Dataset, gsps)


def _referenced_image(reference: Dataset, source: Dataset) -> Dataset:
    """The reduced header with what highdicom checks of a grayscale image, and nothing of the source's display."""
    image = Dataset()
    image.update(reference)
    image.SamplesPerPixel = 1
    image.PhotometricInterpretation = str(source.PhotometricInterpretation)
    return image


def _text_box(number: int, height: int, width: int) -> tuple[float, float, float, float]:
    """Line `number`'s bounding box (left, top, right, bottom) in the image's top-left corner."""
    line = height / 24
    top = height / 50 + number * line
    return (width / 50, top, width * 49 / 50, top + line)


def _rescale(source: Dataset) -> hd.ModalityLUTTransformation | None:
    """The source's Rescale Slope and Intercept (and Rescale Type, else US: unspecified) when both are valid."""
    slope, intercept = valid_value(source, "RescaleSlope")[0], valid_value(source, "RescaleIntercept")[0]
    if slope is None or intercept is None:
        return None
    kind = valid_value(source, "RescaleType")[0] or "US"
    return hd.ModalityLUTTransformation(rescale_intercept=float(intercept), rescale_slope=float(slope),
                                        rescale_type=str(kind))


def _window(source: Dataset) -> hd.pr.SoftcopyVOILUTTransformation | None:
    """The source's first window (centre, width >= 1) and its VOI LUT function, when valid."""
    centre, width = valid_value(source, "WindowCenter")[0], valid_value(source, "WindowWidth")[0]
    if centre is None or width is None:
        return None
    centre, width = (v[0] if isinstance(v, list) else v for v in (centre, width))
    function = valid_value(source, "VOILUTFunction")[0]
    if float(width) < 1 or function not in (None, "LINEAR", "LINEAR_EXACT", "SIGMOID"):
        return None
    return hd.pr.SoftcopyVOILUTTransformation(window_center=float(centre), window_width=float(width),
                                              voi_lut_function=function)
