"""What a DICOM export takes from the source image's header, and what it leaves.

Owns: checking that a source header can be referenced (`check_source`), the reduced
header every exported object is built from (`reference_header`: the source's identity,
patient and study attributes, copied only when valid for their VR), the geometry a
Parametric Map needs (`map_geometry_header`), the attributes set on an object after
highdicom built it (`finish`) and one attribute's value when valid for its VR
(`valid_value`). Works on header-only datasets: Pixel Data is never read.
Does not own: pixels, the objects themselves (export/dicom.py), or files.

Rules:
- Nothing is invented. An attribute is copied verbatim, or left out with a note when its
  value is not valid for its VR (pydicom's validators), or written empty where the
  standard requires it present (Type 2) and the source has no valid value.
- Text is written in UTF-8 (ISO_IR 192) when any copied or medviz text is not ASCII,
  otherwise in the default repertoire; copied values are the decoded text, not bytes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import RE_VALID_UID
from pydicom.valuerep import STR_VR, validate_value

from medviz_core.errors import ExportError

REFERENCED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
"""The source UIDs every reference to it needs; an export refuses a header without them."""

TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip
"""Patient and study attributes the IODs require present (Type 2): copied, or empty."""

OPTIONAL_COPIED = (
    "IssuerOfPatientID", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyDescription", "PatientAge", "PatientSize", "PatientWeight",
)  # fmt: skip
"""Further patient and study attributes copied when the source has valid values."""

SERIES_COPIED = ("BodyPartExamined", "Laterality", "ImageLaterality", "PatientOrientation")
"""Series and image attributes each object takes from the source when valid (`finish`)."""

PLANE_GEOMETRY = (
    "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
)  # fmt: skip
"""A source with all five (valid) is placed in patient space and the objects share its frame
(a Segmentation's pixel measures need the slice thickness too)."""

NOMINAL_PIXEL_SPACING = (1.0, 1.0)
"""(row, column) spacing in mm a Parametric Map states when the source states none."""

UTF8 = "ISO_IR 192"


def check_source(source: Dataset, picture_shape: tuple[int, int]) -> None:
    """Raise ExportError unless the header can be referenced and matches the picture (H, W)."""
    missing = [k for k in REFERENCED if not str(source.get(k, "") or "")]
    if missing:
        expected = ", ".join(REFERENCED)
        raise ExportError(f"the source DICOM header lacks {', '.join(missing)}; expected all of {expected}")
    for keyword in REFERENCED:
        uid = str(source.get(keyword))
        if len(uid) > 64 or not re.fullmatch(RE_VALID_UID, uid):
            raise ExportError(f"the source {keyword} is not a valid UID: {uid!r}")
    rows, columns = source.get("Rows"), source.get("Columns")
    if (rows, columns) != picture_shape:
        raise ExportError(
            f"the source header is {rows} x {columns} (Rows x Columns); "
            f"expected the picture's {picture_shape[0]} x {picture_shape[1]}"
        )
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ExportError(f"expected a single-frame source image; the source has NumberOfFrames={frames}")


def reference_header(source: Dataset, texts: tuple[str, ...]) -> tuple[Dataset, tuple[str, ...]]:
    """The header highdicom builds every object from, and notes on what was not copied.

    It holds the source's REFERENCED UIDs, Rows and Columns, every valid TYPE2_COPIED
    (empty when absent or invalid), OPTIONAL_COPIED and SERIES_COPIED attribute, the plane
    geometry when the source has all of PLANE_GEOMETRY, and SpecificCharacterSet as in the
    module rules (`texts` are medviz's own strings). The source itself is not changed.
    """
    header = Dataset()
    for keyword in (*REFERENCED, "Rows", "Columns"):
        setattr(header, keyword, source.get(keyword))
    notes: list[str] = []
    for keyword in (*TYPE2_COPIED, *OPTIONAL_COPIED, *SERIES_COPIED):
        value, note = valid_value(source, keyword)
        if note:
            notes.append(note)
        if value is not None or keyword in TYPE2_COPIED:
            setattr(header, keyword, value)
    if has_plane_geometry(source):
        for keyword in (*PLANE_GEOMETRY, "PositionReferenceIndicator"):
            setattr(header, keyword, valid_value(source, keyword)[0])
    copied = [str(e.value) for e in header if e.VR in ("PN", "LO", "SH", "ST", "LT", "UT")]
    if not all(text.isascii() for text in (*copied, *texts)):
        header.SpecificCharacterSet = UTF8
    return header, tuple(notes)


def has_plane_geometry(source: Dataset) -> bool:
    """Whether the source states where its pixels are in patient space (all PLANE_GEOMETRY valid)."""
    return all(valid_value(source, keyword)[0] is not None for keyword in PLANE_GEOMETRY)


def map_geometry_header(header: Dataset, frame_of_reference_uid: str) -> tuple[Dataset, str]:
    """The header for a Parametric Map, which must have a frame of reference and a plane.

    A header with plane geometry is returned as it is (the map shares the source's frame).
    Otherwise a copy gets FrameOfReferenceUID `frame_of_reference_uid` (its own), position (0, 0, 0), orientation rows
    +x and columns +y, and PixelSpacing NOMINAL_PIXEL_SPACING; the note says so.
    """
    if "ImagePositionPatient" in header:
        return header, ""
    nominal = copy.deepcopy(header)
    nominal.FrameOfReferenceUID = frame_of_reference_uid
    nominal.PositionReferenceIndicator = None
    nominal.ImagePositionPatient = [0.0, 0.0, 0.0]
    nominal.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    nominal.PixelSpacing = list(NOMINAL_PIXEL_SPACING)
    nominal.SliceThickness = None  # highdicom reads it; a projection has none
    note = (
        "the source states no valid patient-space geometry (frame of reference, position, orientation, "
        "pixel spacing, slice thickness): the Parametric Map has its own new frame of reference with a nominal "
        "1 mm pixel spacing; it matches the source pixel for pixel (same Rows x Columns, referenced by SOP "
        "Instance UID), but distances measured on it are not mm"
    )
    return nominal, note


def finish(dataset: Dataset, header: Dataset | None, kind: str) -> None:
    """The SERIES_COPIED attributes highdicom does not copy, from a `reference_header`
    (None for PNG/JPEG), as dciodvfy checks their conditions:
    - BodyPartExamined (General Series, Type 3): copied when the header has it.
    - ImageLaterality (General Image, Type 3), not on a segmentation or a presentation state
      (no General Image module): copied when present.
    - Laterality (General Series, Type 2C), not on a segmentation (dciodvfy: "present when
      condition unsatisfied"): copied; else empty (unknown) unless the header has
      BodyPartExamined or ImageLaterality, which make it not required.
    - PatientOrientation (General Image, Type 2C), not on a parametric map (its plane
      orientation says it) or a presentation state: copied, else empty (unknown).
    """
    values = {k: header.get(k) if header is not None else None for k in SERIES_COPIED}
    allowed = {
        "BodyPartExamined": True,
        "ImageLaterality": kind not in ("segmentation", "presentation_state"),
        "Laterality": kind != "segmentation",
    }
    for keyword, allow in allowed.items():
        if values[keyword] is not None and allow:
            setattr(dataset, keyword, values[keyword])
    known = any(values[k] is not None for k in ("Laterality", "BodyPartExamined", "ImageLaterality"))
    if kind != "segmentation" and not known:
        dataset.Laterality = None
    if kind not in ("parametric_map", "presentation_state"):
        dataset.PatientOrientation = values["PatientOrientation"]


def valid_value(source: Dataset, keyword: str) -> tuple[Any, str]:
    """A copy of the source's `keyword`: (value, "") when valid for its VR, (None, "") when absent
    or empty, (None, note) when invalid."""
    if keyword not in source or source[keyword].VM == 0:
        return None, ""
    element = source[keyword]
    # Text VRs are checked (and PN copied) as their text; DS and IS values keep their type.
    values = list(element.value) if element.VM > 1 else [element.value]
    try:
        for value in values:
            validate_value(element.VR, str(value) if element.VR in STR_VR else value, config.RAISE)
    except ValueError:
        shown = [str(v) for v in values] if len(values) > 1 else str(values[0])
        return None, f"the source's {keyword} {shown!r} is not a valid DICOM {element.VR} value: not copied"
    if element.VR == "PN":
        values = [str(v) for v in values]
    return (values if len(values) > 1 else values[0]), ""
