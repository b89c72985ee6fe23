"""A study's files come back frontal first, laterals next, labelled from their tags."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from medviz_core.errors import RequestError
from medviz_core.imaging.study import order_study, read_study


def dicom_bytes(view: str, study: str = "1.2.3", series: int = 1, instance: int = 1) -> bytes:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.StudyInstanceUID, ds.ViewPosition = study, view
    ds.SeriesNumber, ds.InstanceNumber = series, instance
    ds.Modality, ds.Rows, ds.Columns = "DX", 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(64, dtype=np.uint8).tobytes()
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def test_views_are_ordered_frontal_first_and_labelled() -> None:
    files = [("b.dcm", dicom_bytes("LL", series=2)), ("a.dcm", dicom_bytes("PA")), ("c.dcm", dicom_bytes("AP"))]
    ordered = order_study(files)
    assert [(f.name, f.label) for f in ordered] == [("a.dcm", "PA"), ("c.dcm", "AP"), ("b.dcm", "lateral")]


def test_files_from_two_studies_are_refused() -> None:
    with pytest.raises(RequestError) as error:
        order_study([("a.dcm", dicom_bytes("PA", study="1.1")), ("b.dcm", dicom_bytes("LL", study="2.2"))])
    assert str(error.value) == "the files belong to 2 different studies (StudyInstanceUID); pass one study"


def test_non_dicom_files_keep_their_order_after_tagged_views(cxr_dir: Path) -> None:
    png = (cxr_dir / "nih_00000001_000.png").read_bytes()
    ordered = order_study([("x.png", png), ("lat.dcm", dicom_bytes("LATERAL"))])
    assert [(f.name, f.label) for f in ordered] == [("lat.dcm", "lateral"), ("x.png", "")]


def test_a_folder_reads_its_image_files_by_name(tmp_path: Path) -> None:
    (tmp_path / "2.dcm").write_bytes(dicom_bytes("LL"))
    (tmp_path / "1.dcm").write_bytes(dicom_bytes("PA"))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [f.label for f in read_study([tmp_path])] == ["PA", "lateral"]


def test_the_shared_dicom_without_view_tags_has_no_label(cxr_dir: Path) -> None:
    [only] = read_study([cxr_dir / "nih_00000002_000_dx.dcm"])
    assert only.label == ""


def test_a_missing_path_is_named() -> None:
    with pytest.raises(RequestError) as error:
        read_study([Path("/no/such.dcm")])
    assert str(error.value) == "image file '/no/such.dcm' does not exist"


def test_a_study_streams_with_its_labels(tiny_engine: object, tmp_path: Path) -> None:
    ordered = order_study([("l.dcm", dicom_bytes("LL")), ("p.dcm", dicom_bytes("PA"))])
    run = tiny_engine.stream([f.data for f in ordered], labels=[f.label for f in ordered], max_new_tokens=1)  # type: ignore[attr-defined]
    step = next(iter(run))
    assert [focus.label for focus in step.images] == ["PA", "lateral"]
