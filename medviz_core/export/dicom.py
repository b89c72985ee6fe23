"""Export one token's attention map as DICOM objects a hospital's viewer (PACS) can show.

Owns: the inputs of an export (`ExportSource`, `ExportMap`), their checks, which objects
are made (`build_export`) and writing them all or nothing (`export_dicom`). Always: an
RGB Secondary Capture of the overlay. With a source DICOM header, also a Parametric Map
(the raw map, float32), when the map has regions a Segmentation (one segment per region),
both at the source's Rows x Columns and referencing its Study, Series and SOP Instance
UIDs, and for a grayscale source a Grayscale Softcopy Presentation State on the source
image (regions, peak and text as a switchable overlay). With a header the UIDs are the
same for the same export (export/uids.py). Pure: no torch, no HTTP. Does not own: reading
recordings, choosing the token or the method (the CLI and the server do), pixels
(export/overlay.py), attribute copying (export/header.py) or the objects' attributes
(export/objects.py, export/presentation_state.py).

Geometry: map cell (r, c) of a (gh, gw) map covers pixel rows [r*H//gh, (r+1)*H//gh) and
columns [c*W//gw, (c+1)*W//gw) of the whole (H, W) picture: the model resizes the whole
image to a square, aspect not kept. See docs/dicom-export.md.

highdicom warns about single-component person names (valid DICOM, copied verbatim); that
one warning is silenced with `warnings.catch_warnings`, which is process-wide state.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medviz_core.errors import ExportError
from medviz_core.export.header import check_source, reference_header
from medviz_core.export.objects import (
    KINDS,
    model_note,
    parametric_map,
    secondary_capture,
    segmentation,
    series_description,
)
from medviz_core.export.overlay import RGBImage, render_overlay
from medviz_core.export.presentation_state import annotation_lines, grayscale_refusal, presentation_state
from medviz_core.export.uids import ExportUIDs
from medviz_core.types import METHODS, FloatMap, Region

Kind = Literal["secondary_capture", "parametric_map", "segmentation", "presentation_state"]

FILE_SUFFIXES: dict[str, str] = {
    "secondary_capture": "overlay_sc",
    "parametric_map": "map_pm",
    "segmentation": "regions_seg",
    "presentation_state": "outlines_pr",
}
"""File name = f"medviz_{method}_{8 hex}_{suffix}.dcm"; the hex is new with every export (a study's zip: export_zip);
the UIDs inside are what stay the same (export/uids.py)."""

NO_IDENTITY = (
    "the source was PNG/JPEG: this export has no patient identity "
    "(patient name, ID, birth date and sex are empty) and is in a new study"
)
NO_SOURCE_OBJECTS = "no Parametric Map or Segmentation: they need a DICOM source to refer to"
NO_REGIONS = "the map has no high-attention regions: no Segmentation"
PERSON_NAME_WARNING = ".*unlikely to represent the intended person name"  # highdicom, on single-component names


@dataclass(frozen=True, eq=False)
class ExportSource:
    """The picture exactly as the model saw it, and the source's DICOM header if it had one."""

    picture: RGBImage  # (H, W, 3) uint8 RGB; for a DICOM input, H x W = the source's Rows x Columns
    header: Dataset | None = None  # the source header (Pixel Data may be absent); None for PNG/JPEG


@dataclass(frozen=True, eq=False)
class ExportMap:
    """One relevancy map and what it shows."""

    relevancy: FloatMap  # (gh, gw) float32 raw values; for a token range, their mean
    regions: tuple[Region, ...]  # normalised 0..1 image coordinates, origin top-left
    method: str  # one of types.METHODS
    description: str  # e.g. "token 12 'effusion'", "tokens 3-9"
    stand_in: bool = False  # an offline stand-in's map (ModelFacts.stand_in): every object says "DEMO MODEL"


@dataclass(frozen=True)
class ExportedObject:
    """One object of an export (in memory, or written at `path`)."""

    kind: Kind
    dataset: Dataset
    path: Path | None = None

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)


@dataclass(frozen=True)
class ExportResult:
    """What an export made: its objects (Secondary Capture first) and notes for people."""

    objects: tuple[ExportedObject, ...]
    notes: tuple[str, ...]  # e.g. NO_IDENTITY; source attributes not copied; the map's geometry
    has_patient_identity: bool  # True: patient attributes copied from a DICOM header; False for PNG/JPEG

    def of_kind(self, kind: Kind) -> ExportedObject | None:
        """The object of `kind`, or None when this export has none."""
        return next((o for o in self.objects if o.kind == kind), None)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(o.path for o in self.objects if o.path is not None)


def build_export(source: ExportSource, token_map: ExportMap) -> ExportResult:
    """Check the inputs and build every object in memory (paths are None). Raises ExportError."""
    _check_picture(source.picture)
    height, width = source.picture.shape[:2]
    _check_map(token_map, height, width)
    if source.header is not None:
        check_source(source.header, (height, width))
    overlay = render_overlay(source.picture, token_map.relevancy, token_map.regions)
    labels = {kind: series_description(kind, token_map.method, token_map.description, token_map.stand_in)
              for kind in KINDS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PERSON_NAME_WARNING, category=UserWarning)
        try:
            return _build(source.header, overlay, token_map, labels, _uids(source.header, token_map))
        except (ValueError, TypeError, AttributeError) as error:  # highdicom's refusals
            raise ExportError(f"highdicom could not build the export: {error}") from error


def export_dicom(source: ExportSource, token_map: ExportMap, out_dir: str | os.PathLike[str]) -> ExportResult:
    """Build the export and write every object into `out_dir`, all or nothing.

    `out_dir` is created when its parent exists. The files are written into a temporary
    folder inside it and renamed into place only when all are written; on any failure
    nothing of this export is left (a folder created for it is removed again).
    """
    built = build_export(source, token_map)
    paths = _write_all(Path(out_dir), list(zip(_file_names(built, token_map), (o.dataset for o in built.objects))))
    objects = tuple(ExportedObject(o.kind, o.dataset, path) for o, path in zip(built.objects, paths))
    return ExportResult(objects, built.notes, built.has_patient_identity)


def _uids(header: Dataset | None, token_map: ExportMap) -> ExportUIDs:
    """The same UIDs for the same source, token description, method, model and map; new ones without a header."""
    instance = None if header is None else str(header.SOPInstanceUID)
    return ExportUIDs.of(instance, token_map.description, token_map.method, token_map.stand_in,
                         token_map.relevancy, token_map.regions)


def _build(header: Dataset | None, overlay: RGBImage, token_map: ExportMap, labels: dict[str, str],
           uids: ExportUIDs) -> ExportResult:
    note = model_note(token_map.stand_in)
    if header is None:
        charset = None if all(t.isascii() for t in labels.values()) else "ISO_IR 192"
        sc = secondary_capture(overlay, None, charset, labels["secondary_capture"], uids, note)
        return ExportResult((ExportedObject("secondary_capture", sc),), (NO_IDENTITY, NO_SOURCE_OBJECTS), False)
    lines = annotation_lines(token_map.method, token_map.description, note if token_map.stand_in else "")
    reduced, notes = reference_header(header, (*labels.values(), *lines))
    sc = secondary_capture(overlay, reduced, None, labels["secondary_capture"], uids, note)
    objects = [ExportedObject("secondary_capture", sc)]
    pm, geometry_note = parametric_map(reduced, token_map.relevancy, token_map.method, labels["parametric_map"], uids)
    objects.append(ExportedObject("parametric_map", pm))
    if token_map.regions:
        seg = segmentation(reduced, token_map.regions, token_map.method, labels["segmentation"], uids)
        objects.append(ExportedObject("segmentation", seg))
    not_grayscale = grayscale_refusal(header)
    if not not_grayscale:
        gsps = presentation_state(reduced, header, token_map.relevancy, token_map.regions, lines,
                                  labels["presentation_state"], uids)
        objects.append(ExportedObject("presentation_state", gsps))
    extra = tuple(n for n in (geometry_note, "" if token_map.regions else NO_REGIONS, not_grayscale) if n)
    return ExportResult(tuple(objects), notes + extra, True)


def _check_picture(picture: object) -> None:
    if not isinstance(picture, np.ndarray) or picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        got = f"{picture.dtype} {picture.shape}" if isinstance(picture, np.ndarray) else type(picture).__name__
        raise ExportError(f"the picture must be a uint8 RGB array (H, W, 3); got {got}")
    if min(picture.shape[:2]) < 1:
        raise ExportError(f"the picture is empty: {picture.shape}")


def _check_map(token_map: ExportMap, height: int, width: int) -> None:
    relevancy = token_map.relevancy
    if not isinstance(relevancy, np.ndarray) or relevancy.dtype != np.float32 or relevancy.ndim != 2:
        got = f"{relevancy.dtype} {relevancy.shape}" if isinstance(relevancy, np.ndarray) else type(relevancy).__name__
        raise ExportError(f"the map must be a float32 array (grid_h, grid_w); got {got}")
    if not 1 <= relevancy.shape[0] <= height or not 1 <= relevancy.shape[1] <= width:
        raise ExportError(
            f"the map's grid {relevancy.shape} must have 1 to {height} rows and 1 to {width} columns (the picture's)"
        )
    if not np.isfinite(relevancy).all():
        raise ExportError(f"the map has {int((~np.isfinite(relevancy)).sum())} non-finite values; expected all finite")
    if token_map.method not in METHODS:
        raise ExportError(f"unknown method {token_map.method!r}; expected one of {', '.join(METHODS)}")
    if not isinstance(token_map.description, str) or not token_map.description.strip():
        raise ExportError(f"the description must be a non-empty string; got {token_map.description!r}")
    for number, region in enumerate(token_map.regions, start=1):
        _check_region(number, region)


def _check_region(number: int, region: Region) -> None:
    if len(region.polygon) < 3:
        raise ExportError(f"region {number}'s polygon has {len(region.polygon)} vertices; expected at least 3")
    for index, (x, y) in enumerate(region.polygon, start=1):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ExportError(f"region {number}'s vertex {index} is ({x}, {y}); expected x and y in 0..1")
    x, y, w, h = region.box
    if not (0.0 <= x and 0.0 <= y and 0.0 <= w and 0.0 <= h and x + w <= 1.0 + 1e-9 and y + h <= 1.0 + 1e-9):
        raise ExportError(f"region {number}'s box is {region.box}; expected (x, y, width, height) inside 0..1")
    if not np.isfinite(region.mass):
        raise ExportError(f"region {number}'s mass is {region.mass}; expected a finite share")


def _write_all(out_dir: Path, named: list[tuple[str, Dataset]]) -> list[Path]:
    """Write into a temporary folder inside out_dir, then rename every file into out_dir."""
    created = _ensure_folder(out_dir)
    renamed: list[Path] = []
    temporary: Path | None = None
    try:
        temporary = Path(tempfile.mkdtemp(prefix=".medviz-export-", dir=out_dir))
        for name, dataset in named:
            pydicom.dcmwrite(temporary / name, dataset, enforce_file_format=True)
        for name, _ in named:
            if (out_dir / name).exists():
                raise FileExistsError(17, "a file of that name exists", str(out_dir / name))
            os.rename(temporary / name, out_dir / name)
            renamed.append(out_dir / name)
    except (OSError, ValueError, TypeError) as error:
        for path in renamed:
            path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ExportError(f"cannot write the export into {out_dir}: {detail}") from error
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return renamed


def _ensure_folder(out_dir: Path) -> bool:
    """Make out_dir if its parent exists; True when it was made here."""
    if out_dir.is_dir():
        return False
    if out_dir.exists():
        raise ExportError(f"the output folder {out_dir} is a file; expected a folder")
    try:
        out_dir.mkdir()
    except OSError as error:
        raise ExportError(f"cannot create the output folder {out_dir}: {error.strerror or error}") from error
    return True


def export_zip(images: Sequence[tuple[str, ExportSource, ExportMap]]) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """One zip in memory of every image's export (for a browser download): (zip bytes, file names, notes).

    `images` holds (label, source, map) per image of the study. With more than one, each file name
    and note starts with the image's number and label (`image2-lateral_...`), so a PA's objects and a
    lateral's stay apart; one image's names are as `export_dicom` writes them. Raises ExportError
    (nothing is built unless every image can be).
    """
    import io
    import zipfile

    built = [(label, token_map, build_export(source, token_map)) for label, source, token_map in images]
    names: list[str] = []
    notes: list[str] = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for number, (label, token_map, export) in enumerate(built, start=1):
            prefix = "" if len(built) == 1 else f"image{number}{_safe_label(label)}_"
            notes.extend(f"{prefix.rstrip('_')}: {note}" if prefix else note for note in export.notes)
            for name, exported in zip(_file_names(export, token_map, prefix), export.objects):
                data = io.BytesIO()
                pydicom.dcmwrite(data, exported.dataset, enforce_file_format=True)
                names.append(name)
                archive.writestr(name, data.getvalue())
    return buffer.getvalue(), tuple(names), tuple(notes)


def _file_names(export: ExportResult, token_map: ExportMap, prefix: str = "") -> list[str]:
    """Each object's file name (FILE_SUFFIXES), after one new stem for the whole export."""
    stem = f"{prefix}medviz_{token_map.method}_{uuid.uuid4().hex[:8]}"
    return [f"{stem}_{FILE_SUFFIXES[o.kind]}.dcm" for o in export.objects]


def _safe_label(label: str) -> str:
    """`-label` with only letters, digits, `-` and `_` kept (a file name on any system), or nothing."""
    kept = "".join(c for c in label if c.isascii() and (c.isalnum() or c in "-_"))[:32]
    return f"-{kept}" if kept else ""
