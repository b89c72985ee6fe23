"""A study's images in a sensible order: several files or a folder, DICOM views sorted by their tags.

Owns: reading a study's files, checking that DICOM files belong to one study, ordering
them frontal views first (PA, AP), then laterals, then the rest (series and instance
number break ties), and labelling each image from its ViewPosition tag. Non-DICOM files
keep the order given (folders: by name) and take no label. Does not own decoding pixels
(imaging/load.py) or streaming (engine/engine.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medviz_core.errors import RequestError
from medviz_core.imaging.pixels import sniff_format

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
VIEW_ORDER = {"PA": 0, "AP": 1, "LATERAL": 2, "LL": 2, "RL": 2, "LAT": 2}
VIEW_LABELS = {"PA": "PA", "AP": "AP", "LATERAL": "lateral", "LL": "lateral", "RL": "lateral", "LAT": "lateral"}


@dataclass(frozen=True)
class StudyFile:
    """One file of a study, with what its tags say about it."""

    name: str
    data: bytes
    label: str  # "PA", "AP", "lateral", another view position lower-cased, or ""
    rank: tuple[int, int, int, int]  # sort key: view group, series, instance, input order
    study_uid: str | None


def _describe(name: str, data: bytes, order: int) -> StudyFile:
    if sniff_format(data) != "dicom":
        return StudyFile(name, data, "", (3, 0, 0, order), None)
    import pydicom

    try:
        tags = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types for broken headers
        raise RequestError(f"{name}: the DICOM header could not be read ({type(error).__name__})") from None
    view = str(getattr(tags, "ViewPosition", "") or "").strip().upper()
    series = int(getattr(tags, "SeriesNumber", 0) or 0)
    instance = int(getattr(tags, "InstanceNumber", 0) or 0)
    label = VIEW_LABELS.get(view, view.lower())
    uid = str(getattr(tags, "StudyInstanceUID", "") or "") or None
    return StudyFile(name, data, label, (VIEW_ORDER.get(view, 3), series, instance, order), uid)


def order_study(files: Sequence[tuple[str, bytes]]) -> list[StudyFile]:
    """Files (name, bytes) of one study -> ordered StudyFiles; RequestError if they mix studies."""
    if not files:
        raise RequestError("a study needs at least one image file; got none")
    described = [_describe(name, data, i) for i, (name, data) in enumerate(files)]
    studies = {f.study_uid for f in described if f.study_uid}
    if len(studies) > 1:
        raise RequestError(f"the files belong to {len(studies)} different studies (StudyInstanceUID); pass one study")
    return sorted(described, key=lambda f: f.rank)


def read_study(paths: Sequence[Path]) -> list[StudyFile]:
    """Files and folders (their image files, by name) -> one ordered study."""
    files: list[tuple[str, bytes]] = []
    for path in paths:
        if path.is_dir():
            members = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not members:
                raise RequestError(f"folder {str(path)!r} holds no PNG, JPEG or DICOM file")
            files += [(p.name, p.read_bytes()) for p in members]
        elif path.is_file():
            files.append((path.name, path.read_bytes()))
        else:
            raise RequestError(f"image file {str(path)!r} does not exist")
    return order_study(files)
