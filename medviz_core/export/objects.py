"""The three DICOM objects of an export, built in memory with highdicom.

Owns: the Secondary Capture of the overlay (`secondary_capture`), the Parametric Map of
the raw map at source resolution (`parametric_map`) and the Segmentation of the regions
(`segmentation`), each its own series with the UIDs export/uids.py gives it, and the texts
and codes they carry; the series description and number of every kind, the presentation
state's too. Does not own: checking inputs, choosing which attributes of the source are
copied (export/header.py), pixels (export/overlay.py), the presentation state
(export/presentation_state.py) or files (export/dicom.py).

Codes: the map's quantity and the segments' property type are DCM 130404 "Saliency" (CID
7180 / CID 217 Visual Explanation), the segments' category SCT 309825002 "Spatial and
Relational Concept", the unit UCUM "1" (no units), the algorithm family DCM 123110
"Artificial Intelligence". Values medviz must fill although it has no real one:
Manufacturer and model "medviz", DeviceSerialNumber "none" (Type 1 in Enhanced General
Equipment; software has no serial number).

Logging: highdicom's INFO lines name the source's SOP Instance UID ('copy ...-related attributes
from dataset "1.2..."'), an identifier that must never reach a log, so its logger is held at
WARNING from the first import of this module on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from medviz_core import __version__
from medviz_core.export.header import finish, map_geometry_header
from medviz_core.export.overlay import RGBImage, map_to_pixels, region_masks
from medviz_core.export.uids import ExportUIDs
from medviz_core.types import REAL_MODEL_NOTE, STAND_IN_NOTE, FloatMap, Region

logging.getLogger("highdicom").setLevel(logging.WARNING)  # its INFO lines name the source's UIDs

MANUFACTURER = "medviz"
SERIAL_NUMBER = "none"
SERIES_NUMBERS = {"secondary_capture": 901, "parametric_map": 902, "segmentation": 903, "presentation_state": 904}
"""Fixed per kind; the Series Instance UIDs tell one export from another (export/uids.py)."""

KINDS = {
    "secondary_capture": "attention overlay",
    "parametric_map": "attention map",
    "segmentation": "attention regions",
    "presentation_state": "attention outlines",
}
"""Each object's kind and the words its SeriesDescription starts with."""

_PLACEHOLDER_ORIENTATION = ("L", "F")  # highdicom insists on one; `finish` replaces it


def series_description(kind: str, method: str, description: str, stand_in: bool = False) -> str:
    """The SeriesDescription (LO: at most 64 characters, no backslash or control characters);
    a stand-in model's (types.is_stand_in) starts "medviz DEMO MODEL" so no PACS list hides it."""
    text = f"medviz {'DEMO MODEL ' if stand_in else ''}{KINDS[kind]}: {description} ({method})"
    text = "".join(" " if ch == "\\" or ord(ch) < 32 else ch for ch in text)
    return text if len(text) <= 64 else text[:63] + "…"


def model_note(stand_in: bool) -> str:
    """The Secondary Capture's ImageComments: types.STAND_IN_NOTE or REAL_MODEL_NOTE, in ASCII."""
    return (STAND_IN_NOTE if stand_in else REAL_MODEL_NOTE).replace("\u2014", "-")


def secondary_capture(overlay: RGBImage, header: Dataset | None, charset: str | None, label: str,
                      uids: ExportUIDs, note: str = "") -> Dataset:
    """The overlay as an RGB Secondary Capture: in the source's study when there is a header
    (patient and study attributes from it, the source as Source Image Sequence), else in a
    new study with empty patient attributes (Type 2: present, no value). `note` (ImageComments):
    what the model is (`model_note`)."""
    common: dict[str, Any] = dict(  # highdicom's keyword arguments, shared by both constructors
        pixel_array=overlay, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=uids.series("secondary_capture"), series_number=SERIES_NUMBERS["secondary_capture"],
        sop_instance_uid=uids.instance("secondary_capture"),
        instance_number=1, manufacturer=MANUFACTURER, patient_orientation=_PLACEHOLDER_ORIENTATION,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )  # fmt: skip
    if header is None:
        sc = hd.sc.SCImage(study_instance_uid=hd.UID(), specific_character_set=charset, **common)
    else:
        sc = hd.sc.SCImage.from_ref_dataset(header, **common)
        sc.copy_patient_and_study_information(header)  # from_ref_dataset takes only the Type 2 ones
        sc.SourceImageSequence = [_reference_item(header)]
        sc.SourceImageSequence[0].SpatialLocationsPreserved = "YES"
        sc.DerivationDescription = "attention heatmap and region outlines drawn over the source image by medviz"
    finish(sc, header, "secondary_capture")
    sc.ConversionType = "WSD"  # a workstation rendering, not a digitised image ("DI")
    sc.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    sc.SecondaryCaptureDeviceManufacturerModelName = MANUFACTURER
    sc.SecondaryCaptureDeviceSoftwareVersions = __version__
    sc.SeriesDescription = label
    if note:
        sc.ImageComments = note
    return cast(Dataset, sc)


def parametric_map(header: Dataset, relevancy: FloatMap, method: str, label: str,
                   uids: ExportUIDs) -> tuple[Dataset, str]:
    """The raw map at the source's Rows x Columns as float32, with an identity real world
    value mapping (unitless attention relevancy of `method`); and a note about its geometry."""
    values = map_to_pixels(relevancy, int(header.Rows), int(header.Columns))
    low, high = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=method[:16], lut_explanation=f"attention relevancy ({method}), unitless"[:64],
        unit=codes.UCUM.NoUnits, value_range=(low, high), slope=1.0, intercept=0.0,
        quantity_definition=codes.DCM.Saliency,
    )  # fmt: skip
    # Relevancy values are far below 1: a LINEAR window narrower than 1 is not allowed, LINEAR_EXACT is.
    window = hd.VOILUTTransformation(window_center=(low + high) / 2, window_width=(high - low) or 1.0,
                                     voi_lut_function="LINEAR_EXACT")
    geometry, note = map_geometry_header(header, uids.frame_of_reference("parametric_map"))
    spacing = (float(geometry.PixelSpacing[0]), float(geometry.PixelSpacing[1]))
    measures = hd.PixelMeasuresSequence(pixel_spacing=spacing, slice_thickness=geometry.get("SliceThickness"))
    pm = hd.pm.ParametricMap(
        [geometry], values, uids.series("parametric_map"), SERIES_NUMBERS["parametric_map"],
        uids.instance("parametric_map"), 1,
        MANUFACTURER, MANUFACTURER, __version__, SERIAL_NUMBER, False, [mapping],
        voi_lut_transformations=[window], derived_pixel_contrast="RESAMPLED",
        pixel_measures=measures,
        content_label="ATTENTION", content_description=label,
    )  # fmt: skip
    finish(pm, header, "parametric_map")
    pm.SeriesDescription = label
    return pm, note


def segmentation(header: Dataset, regions: Sequence[Region], method: str, label: str, uids: ExportUIDs) -> Dataset:
    """A binary Segmentation at the source's Rows x Columns, one segment per region (in
    order), every segment's frame kept even when its polygon covers no pixel centre."""
    masks = region_masks(regions, int(header.Rows), int(header.Columns))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"medviz {method}"[:64], family=codes.DCM.ArtificialIntelligence, version=__version__
    )
    segments = []
    for number, region in enumerate(regions, start=1):
        segment = hd.seg.SegmentDescription(
            segment_number=number, segment_label=f"high attention {number}",
            segmented_property_category=codes.SCT.SpatialAndRelationalConcept,
            segmented_property_type=codes.DCM.Saliency, algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
        )  # fmt: skip
        segment.SegmentDescription = f"{region.mass:.3f} of the map's mass, {region.zone}"
        segments.append(segment)
    seg = hd.seg.Segmentation(
        [header], np.moveaxis(masks, 0, -1)[np.newaxis], "BINARY", segments, uids.series("segmentation"),
        SERIES_NUMBERS["segmentation"], uids.instance("segmentation"), 1, MANUFACTURER, MANUFACTURER, __version__,
        SERIAL_NUMBER,
        omit_empty_frames=False, content_label="ATTENTION", content_description=label,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )  # fmt: skip
    finish(seg, header, "segmentation")
    seg.SeriesDescription = label
    return cast(Dataset, seg)


def _reference_item(header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    return item
