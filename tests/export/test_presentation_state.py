"""The Grayscale Softcopy Presentation State of an export, the export's repeatable UIDs, and
medviz's rendering of a GSPS read back from its dataset.

The source is the real NIH DICOM beside the repo (MONOCHROME2, 1024 x 1024, no window), read
header-only as a recording keeps it; dciodvfy's verdict on the GSPS is in test_dicom_export.py
beside the other objects'.
"""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medviz_core.export.dicom import ExportResult, ExportSource, build_export, export_dicom, export_zip
from medviz_core.export.presentation_preview import render_preview
from medviz_core.export.presentation_state import LAYER, NOT_A_FINDING
from medviz_core.imaging.load import load_image
from tests.export.conftest import SOURCE
from tests.export.test_dicom_export import peak_map, token_map

YELLOW = (255, 255, 0)  # the layer's CIELab (97.1, -21.6, 94.5) as 8-bit RGB (OpenCV, clipped)


@pytest.fixture(scope="module")
def exported(header: Dataset, picture: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export_dicom(ExportSource(picture, header), token_map(), tmp_path_factory.mktemp("gsps"))


@pytest.fixture(scope="module")
def gsps(exported: ExportResult) -> Dataset:
    found = exported.of_kind("presentation_state")
    assert found is not None and found.path is not None
    return pydicom.dcmread(found.path)


def graphics(gsps: Dataset, kind: str) -> list[list[float]]:
    (annotation,) = gsps.GraphicAnnotationSequence
    return [[float(v) for v in g.GraphicData] for g in annotation.GraphicObjectSequence if g.GraphicType == kind]


def uids(result: ExportResult) -> list[str]:
    return [uid for o in result.objects for uid in (o.series_instance_uid, o.sop_instance_uid)]


# --- what the GSPS holds -------------------------------------------------------------------


def test_the_gsps_references_the_source_image_in_its_study(gsps: Dataset, header: Dataset) -> None:
    assert (gsps.StudyInstanceUID, gsps.Modality, gsps.SeriesNumber) == (header.StudyInstanceUID, "PR", 904)
    (series,) = gsps.ReferencedSeriesSequence
    (image,) = series.ReferencedImageSequence
    assert series.SeriesInstanceUID == header.SeriesInstanceUID
    assert (image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID) == (header.SOPClassUID, header.SOPInstanceUID)
    (annotation,) = gsps.GraphicAnnotationSequence
    assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
    assert (str(gsps.PatientName), gsps.PatientID) == ("Covid0000", "Covid0000")


def test_one_graphic_layer_holds_a_closed_polyline_per_region_in_source_pixels(gsps: Dataset) -> None:
    (layer,) = gsps.GraphicLayerSequence
    assert (layer.GraphicLayer, gsps.GraphicAnnotationSequence[0].GraphicLayer) == (LAYER, LAYER)
    units = {g.GraphicAnnotationUnits for g in gsps.GraphicAnnotationSequence[0].GraphicObjectSequence}
    assert units == {"PIXEL"}
    assert graphics(gsps, "POLYLINE") == [
        [512, 256, 768, 256, 768, 512, 512, 512, 512, 256],  # rectangle (0.5, 0.25)-(0.75, 0.5) of 1024 x 1024, closed
        [128, 640, 416, 640, 128, 928, 128, 640],  # the triangle, closed
    ]


def test_the_peak_is_a_point_with_a_circle_around_it_at_the_centre_of_the_maximum_cell(gsps: Dataset) -> None:
    assert graphics(gsps, "POINT") == [[608, 352]]  # cell (5, 9) of 16 x 16: columns 576..640, rows 320..384
    (circle,) = graphics(gsps, "CIRCLE")
    assert circle[:2] == [608, 352] and circle[2:] == pytest.approx([608 + 1024 / 40, 352])


def test_the_text_names_the_token_and_method_and_says_it_is_not_a_finding(gsps: Dataset) -> None:
    texts = gsps.GraphicAnnotationSequence[0].TextObjectSequence
    assert [t.UnformattedTextValue for t in texts] == ["medviz rollout: token 12 'effusion'", NOT_A_FINDING]
    assert all(t.BoundingBoxAnnotationUnits == "PIXEL" for t in texts)


def test_the_gsps_is_labelled_with_medviz_the_method_and_the_token(gsps: Dataset) -> None:
    assert gsps.SeriesDescription == "medviz attention outlines: token 12 'effusion' (rollout)"
    assert (gsps.ContentLabel, gsps.ContentDescription) == ("ATTENTION", gsps.SeriesDescription)


def test_a_stand_in_models_gsps_carries_its_note(header: Dataset, picture: np.ndarray) -> None:
    found = build_export(ExportSource(picture, header), token_map(stand_in=True)).of_kind("presentation_state")
    assert found is not None
    texts = [t.UnformattedTextValue for t in found.dataset.GraphicAnnotationSequence[0].TextObjectSequence]
    assert texts[2:] == ["Demo model: untrained vision - the heatmaps show the", "mechanics of attention, not medicine; the text is not a",
                         "report."]


def test_a_map_without_regions_still_gets_the_peak_and_the_text(header: Dataset, picture: np.ndarray) -> None:
    found = build_export(ExportSource(picture, header), token_map(regions=())).of_kind("presentation_state")
    assert found is not None
    kinds = [g.GraphicType for g in found.dataset.GraphicAnnotationSequence[0].GraphicObjectSequence]
    assert kinds == ["POINT", "CIRCLE"]


def test_the_display_keeps_the_sources_polarity_rescale_and_window(header: Dataset, picture: np.ndarray) -> None:
    plain = build_export(ExportSource(picture, header), token_map()).of_kind("presentation_state")
    assert plain is not None
    assert plain.dataset.PresentationLUTShape == "IDENTITY"
    assert "SoftcopyVOILUTSequence" not in plain.dataset and "RescaleSlope" not in plain.dataset
    source = copy.deepcopy(header)
    source.PhotometricInterpretation = "MONOCHROME1"
    source.RescaleSlope, source.RescaleIntercept = 2, -10
    source.WindowCenter, source.WindowWidth = [200, 100], [180, 60]
    found = build_export(ExportSource(picture, source), token_map()).of_kind("presentation_state")
    assert found is not None
    dataset = found.dataset
    assert dataset.PresentationLUTShape == "INVERSE"
    assert (dataset.RescaleSlope, dataset.RescaleIntercept, dataset.RescaleType) == (2, -10, "US")
    window = dataset.SoftcopyVOILUTSequence[0]
    assert (window.WindowCenter, window.WindowWidth) == (200, 180)


def test_an_rgb_source_gets_no_gsps_and_a_note_that_says_why(header: Dataset, picture: np.ndarray) -> None:
    source = copy.deepcopy(header)
    source.PhotometricInterpretation, source.SamplesPerPixel = "RGB", 3
    result = build_export(ExportSource(picture, source), token_map())
    assert [o.kind for o in result.objects] == ["secondary_capture", "parametric_map", "segmentation"]
    assert result.notes[-1] == ("no Grayscale Softcopy Presentation State: the source's PhotometricInterpretation is "
                                "'RGB', and a GSPS applies to grayscale (MONOCHROME1/MONOCHROME2) images only")


def test_a_png_source_gets_no_gsps(cxr_dir: Path) -> None:
    picture = load_image((cxr_dir / "nih_00000001_000.png").read_bytes())
    assert [o.kind for o in build_export(ExportSource(picture), token_map()).objects] == ["secondary_capture"]


def test_a_non_ascii_token_is_written_in_utf8(header: Dataset, picture: np.ndarray, tmp_path: Path) -> None:
    result = export_dicom(ExportSource(picture, header), token_map(description="token 4 'épanchement'"), tmp_path)
    found = result.of_kind("presentation_state")
    assert found is not None and found.path is not None
    dataset = pydicom.dcmread(found.path)
    assert dataset.SpecificCharacterSet == "ISO_IR 192"
    text = dataset.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue
    assert text == "medviz rollout: token 4 'épanchement'"


def test_the_zip_of_a_study_holds_the_gsps_beside_the_other_objects(header: Dataset, picture: np.ndarray) -> None:
    data, names, _ = export_zip([("PA", ExportSource(picture, header), token_map())])
    assert [name.split("_", 3)[3] for name in names] == ["overlay_sc.dcm", "map_pm.dcm", "regions_seg.dcm", "outlines_pr.dcm"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert pydicom.dcmread(io.BytesIO(archive.read(names[3]))).Modality == "PR"


# --- the same export, the same UIDs -------------------------------------------------------------


def test_the_same_export_twice_gives_the_same_uids_for_all_four_objects(header: Dataset, picture: np.ndarray) -> None:
    first, second = (build_export(ExportSource(picture, header), token_map()) for _ in range(2))
    assert len(set(uids(first))) == 8
    assert uids(first) == uids(second)
    assert first.objects[1].dataset.FrameOfReferenceUID == second.objects[1].dataset.FrameOfReferenceUID


@pytest.mark.parametrize("change", ["another token", "another method", "another map", "another model"])
def test_another_token_method_map_or_model_gives_other_uids(change: str, header: Dataset, picture: np.ndarray) -> None:
    changed = {
        "another token": dict(description="token 13 'right'"),
        "another method": dict(method="flow"),
        "another map": dict(relevancy=peak_map() * np.float32(2)),
        "another model": dict(stand_in=True),
    }[change]
    first = build_export(ExportSource(picture, header), token_map())
    other = build_export(ExportSource(picture, header), token_map(**changed))
    assert not set(uids(first)) & set(uids(other))


def test_another_source_image_gives_other_uids(header: Dataset, picture: np.ndarray) -> None:
    moved = copy.deepcopy(header)
    moved.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    first, other = (build_export(ExportSource(picture, h), token_map()) for h in (header, moved))
    assert not set(uids(first)) & set(uids(other))


def test_a_png_source_gets_new_uids_every_time(cxr_dir: Path) -> None:
    picture = load_image((cxr_dir / "nih_00000001_000.png").read_bytes())
    first, second = (build_export(ExportSource(picture), token_map()) for _ in range(2))
    assert not set(uids(first)) & set(uids(second))
    assert first.objects[0].dataset.StudyInstanceUID != second.objects[0].dataset.StudyInstanceUID


# --- medviz's rendering, read back from the GSPS -------------------------------------------------


def test_the_preview_draws_what_the_gsps_holds_in_the_layers_colour(gsps: Dataset, cxr_dir: Path) -> None:
    source = pydicom.dcmread(cxr_dir / SOURCE)
    image = np.asarray(render_preview(source, gsps))
    assert image.shape == (1024, 1024, 3)
    assert tuple(image[256, 640]) == YELLOW  # the rectangle's top edge
    assert tuple(image[352, 607]) == YELLOW  # the peak's point
    assert tuple(image[800, 900]) == (int(source.pixel_array[800, 900]),) * 3  # the image as stored: no window


def test_the_preview_follows_the_gsps_not_the_regions(gsps: Dataset, cxr_dir: Path) -> None:
    moved = copy.deepcopy(gsps)
    polyline = moved.GraphicAnnotationSequence[0].GraphicObjectSequence[0]
    polyline.GraphicData = [100.0, 900.0, 300.0, 900.0]
    moved.PresentationLUTShape = "INVERSE"
    source = pydicom.dcmread(cxr_dir / SOURCE)
    image = np.asarray(render_preview(source, moved))
    assert tuple(image[900, 200]) == YELLOW  # the moved line
    assert tuple(image[256, 640]) != YELLOW  # the rectangle's top edge is gone
    assert tuple(image[800, 900]) == (255 - int(source.pixel_array[800, 900]),) * 3  # INVERSE
    assert np.asarray(render_preview(source, moved, width=512)).shape == (512, 512, 3)
