"""DICOM export: every file read back with pydicom, its pixels, references and attributes,
every refusal leaving nothing behind, and the objects checked by validators no one here
wrote (dicom3tools' dciodvfy, dcmtk's dcmftest and dcmdump).

The source is the real NIH DICOM beside the repo, read header-only (stop_before_pixels),
as a recording will keep it. Its picture is what imaging.load_image makes of the file.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medviz_core.errors import ExportError
from medviz_core.export.dicom import (
    NO_IDENTITY,
    NO_REGIONS,
    NO_SOURCE_OBJECTS,
    ExportMap,
    ExportResult,
    ExportSource,
    build_export,
    export_dicom,
)
from medviz_core.export.header import NOMINAL_PIXEL_SPACING
from medviz_core.export.overlay import ALPHA, VIRIDIS, cell_edges, map_to_pixels, region_masks, render_overlay
from medviz_core.imaging.load import load_image
from medviz_core.types import Region
from tests.export.conftest import SOURCE

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
PM_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
GSPS_STORAGE = "1.2.840.10008.5.1.4.1.1.11.1"
PEAK = (5, 9)  # the synthetic map's maximum cell (row, col) on its 16 x 16 grid
AGE_NOTE = "the source's PatientAge '81' is not a valid DICOM AS value: not copied"
LATERALITY_UNKNOWN = (
    "Warning - is only permitted to be empty when actually unknown; should be absent (not empty) "
    "if an unpaired body part, and have a value if a paired body part - attribute <Laterality>"
)


def rectangle(x0: float, y0: float, x1: float, y1: float, mass: float = 0.5) -> Region:
    return Region(polygon=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), box=(x0, y0, x1 - x0, y1 - y0), mass=mass, zone="left upper")


TRIANGLE = Region(polygon=((0.125, 0.625), (0.40625, 0.625), (0.125, 0.90625)), box=(0.125, 0.625, 0.28125, 0.28125), mass=0.2, zone="right lower")


def peak_map() -> np.ndarray:
    grid = np.full((16, 16), 0.25, dtype=np.float32)
    grid[PEAK] = 2.0
    grid[1, 1] = 0.0
    return grid


def token_map(**changes: Any) -> ExportMap:
    fields: dict[str, Any] = dict(relevancy=peak_map(), regions=(rectangle(0.5, 0.25, 0.75, 0.5), TRIANGLE), method="rollout", description="token 12 'effusion'")
    fields.update(changes)
    return ExportMap(**fields)


@pytest.fixture(scope="module")
def exported(header: Dataset, picture: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export_dicom(ExportSource(picture, header), token_map(), tmp_path_factory.mktemp("export"))


def read(result: ExportResult, kind: str) -> Dataset:
    (path,) = [o.path for o in result.objects if o.kind == kind]
    assert path is not None
    return pydicom.dcmread(path)


def geometry_header(header: Dataset) -> Dataset:
    placed = copy.deepcopy(header)
    placed.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1000"
    placed.ImagePositionPatient = [-180.0, -200.0, 0.0]
    placed.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    placed.PixelSpacing = [0.35, 0.35]
    placed.SliceThickness = 1.0
    return placed


# --- geometry and pixels -------------------------------------------------------------


def test_map_cells_cover_floor_divided_pixel_blocks_of_the_whole_image() -> None:
    assert cell_edges(10, 3).tolist() == [0, 3, 6, 10]
    grid = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    full = map_to_pixels(grid, 10, 5)
    assert full[:, 0].tolist() == [1, 1, 1, 3, 3, 3, 5, 5, 5, 5]
    assert full[0].tolist() == [1, 1, 2, 2, 2]


def test_a_rectangle_covers_the_pixels_whose_centres_lie_inside_it() -> None:
    (mask,) = region_masks([rectangle(0.25, 0.25, 0.5, 0.75)], 8, 8)
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:6, 2:4] = True
    assert (mask == expected).all()


def test_a_triangle_covers_the_pixels_below_its_diagonal() -> None:
    (mask,) = region_masks([TRIANGLE], 8, 8)  # (1, 5), (3.25, 5), (1, 7.25) in pixels: centres with x + y < 8.25
    assert np.argwhere(mask).tolist() == [[5, 1], [5, 2], [6, 1]]


def test_the_overlay_leaves_the_minimum_untouched_and_colours_the_maximum() -> None:
    picture = np.full((32, 32, 3), 100, dtype=np.uint8)
    grid = np.zeros((4, 4), dtype=np.float32)
    grid[1, 2] = 5.0
    overlay = render_overlay(picture, grid, ())
    assert overlay[0, 0].tolist() == [100, 100, 100]
    expected = np.rint((1 - ALPHA) * 100 + ALPHA * VIRIDIS[255].astype(np.float64)).astype(int)
    assert overlay[8:16, 16:24].reshape(-1, 3).tolist() == [expected.tolist()] * 64
    assert VIRIDIS[0].tolist() == [68, 1, 84] and VIRIDIS[255].tolist() == [253, 231, 37]


# --- the objects of a DICOM source ------------------------------------------------------


def test_a_dicom_source_gives_a_capture_a_map_a_segmentation_and_a_presentation_state(exported: ExportResult) -> None:
    assert [o.kind for o in exported.objects] == ["secondary_capture", "parametric_map", "segmentation", "presentation_state"]
    assert [read(exported, o.kind).SOPClassUID for o in exported.objects] == [SC_STORAGE, PM_STORAGE, SEG_STORAGE, GSPS_STORAGE]
    assert [p.name.split("_", 3)[3] for p in exported.paths] == ["overlay_sc.dcm", "map_pm.dcm", "regions_seg.dcm", "outlines_pr.dcm"]
    folder = exported.paths[0].parent
    assert sorted(os.listdir(folder)) == sorted(p.name for p in exported.paths)  # no temporary folder left
    assert exported.has_patient_identity is True


def test_the_parametric_map_holds_the_raw_map_block_by_block_with_its_maximum_in_the_peak_cell(exported: ExportResult) -> None:
    pm = read(exported, "parametric_map")
    values = pm.pixel_array
    assert values.dtype == np.float32 and values.shape == (1024, 1024)
    assert (values == map_to_pixels(peak_map(), 1024, 1024)).all()
    rows, cols = np.nonzero(values == values.max())
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (320, 384, 576, 640)  # cell (5, 9) of 16 x 16
    assert float(values.max()) == 2.0 and float(values.min()) == 0.0


def test_the_parametric_map_says_its_values_are_unitless_attention_relevancy_of_the_method(exported: ExportResult) -> None:
    mapping = read(exported, "parametric_map").SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.LUTLabel == "rollout"
    assert mapping.LUTExplanation == "attention relevancy (rollout), unitless"
    unit = mapping.MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("1", "UCUM")
    assert (mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept) == (1.0, 0.0)
    assert (mapping.DoubleFloatRealWorldValueFirstValueMapped, mapping.DoubleFloatRealWorldValueLastValueMapped) == (0.0, 2.0)
    quantity = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
    assert (quantity.CodeValue, quantity.CodingSchemeDesignator, quantity.CodeMeaning) == ("130404", "DCM", "Saliency")


def test_the_segmentation_holds_one_segment_per_region_rasterised_at_source_resolution(exported: ExportResult) -> None:
    seg = read(exported, "segmentation")
    assert seg.SegmentationType == "BINARY" and (seg.Rows, seg.Columns) == (1024, 1024)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["high attention 1", "high attention 2"]
    assert [s.SegmentDescription for s in seg.SegmentSequence] == ["0.500 of the map's mass, left upper", "0.200 of the map's mass, right lower"]
    frames = seg.pixel_array.astype(bool)
    numbers = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in seg.PerFrameFunctionalGroupsSequence]
    expected = region_masks(token_map().regions, 1024, 1024)
    assert numbers == [1, 2]
    assert (frames[0] == expected[0]).all() and (frames[1] == expected[1]).all()
    block = np.zeros((1024, 1024), dtype=bool)
    block[256:512, 512:768] = True  # rectangle (0.5, 0.25)-(0.75, 0.5): columns 512..767, rows 256..511
    assert (frames[0] == block).all()


def test_the_secondary_capture_shows_the_rendered_overlay_at_source_resolution(exported: ExportResult, picture: np.ndarray) -> None:
    sc = read(exported, "secondary_capture")
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.Rows, sc.Columns) == ("RGB", 3, 1024, 1024)
    assert (sc.pixel_array == render_overlay(picture, peak_map(), token_map().regions)).all()
    assert (sc.pixel_array[64:128, 64:128] == picture[64:128, 64:128]).all()  # cell (1, 1) holds the minimum


def test_every_object_references_the_source_study_series_and_instance(exported: ExportResult, header: Dataset) -> None:
    sc = read(exported, "secondary_capture")
    assert sc.StudyInstanceUID == header.StudyInstanceUID
    source_item = sc.SourceImageSequence[0]
    assert (source_item.ReferencedSOPClassUID, source_item.ReferencedSOPInstanceUID) == (header.SOPClassUID, header.SOPInstanceUID)
    assert source_item.SpatialLocationsPreserved == "YES"
    for kind in ("parametric_map", "segmentation"):
        dataset = read(exported, kind)
        assert dataset.StudyInstanceUID == header.StudyInstanceUID
        series = dataset.ReferencedSeriesSequence[0]
        assert series.SeriesInstanceUID == header.SeriesInstanceUID
        assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
        assert dataset.SourceImageSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
        for frame in dataset.PerFrameFunctionalGroupsSequence:
            derived_from = frame.DerivationImageSequence[0].SourceImageSequence[0]
            assert derived_from.ReferencedSOPInstanceUID == header.SOPInstanceUID


def test_the_objects_copy_patient_and_study_attributes_and_invent_none(exported: ExportResult) -> None:
    for o in exported.objects:
        dataset = read(exported, o.kind)
        assert (str(dataset.PatientName), dataset.PatientID, dataset.PatientSex) == ("Covid0000", "Covid0000", "M")
        assert dataset.StudyDescription == "No Finding"
        for keyword in ("PatientBirthDate", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            assert keyword in dataset and dataset[keyword].VM == 0, keyword  # Type 2: present, empty as in the source
        assert "PatientAge" not in dataset  # '81' is not a valid age string
    assert exported.notes[0] == AGE_NOTE


def test_a_source_without_geometry_gives_the_map_its_own_frame_and_a_nominal_spacing(exported: ExportResult, header: Dataset) -> None:
    pm = read(exported, "parametric_map")
    assert "FrameOfReferenceUID" not in header and pm.FrameOfReferenceUID != ""
    shared = pm.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == list(NOMINAL_PIXEL_SPACING)
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert "FrameOfReferenceUID" not in read(exported, "segmentation")
    assert exported.notes[1].startswith("the source states no valid patient-space geometry")


def test_a_source_in_patient_space_shares_its_frame_of_reference(header: Dataset, picture: np.ndarray) -> None:
    result = build_export(ExportSource(picture, geometry_header(header)), token_map())
    pm, seg = result.objects[1].dataset, result.objects[2].dataset
    assert pm.FrameOfReferenceUID == seg.FrameOfReferenceUID == "1.2.826.0.1.3680043.8.498.1000"
    assert [float(v) for v in pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing] == [0.35, 0.35]
    position = pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert [float(v) for v in position] == [-180.0, -200.0, 0.0]
    assert result.notes == (AGE_NOTE,)


def test_every_object_is_its_own_new_series_and_instance(exported: ExportResult, header: Dataset) -> None:
    uids = [uid for o in exported.objects for uid in (o.sop_instance_uid, o.series_instance_uid)]
    assert len(set(uids)) == 8
    assert not set(uids) & {header.SOPInstanceUID, header.SeriesInstanceUID}
    assert all(uid.startswith("2.25.") and len(uid) <= 64 and pydicom.uid.UID(uid).is_valid for uid in uids)


def test_the_export_does_not_change_the_source_header(header: Dataset, picture: np.ndarray) -> None:
    before = header.to_json_dict()
    build_export(ExportSource(picture, header), token_map())
    assert header.to_json_dict() == before


def test_a_latin1_patient_name_is_written_as_the_same_text_in_utf8(header: Dataset, picture: np.ndarray, tmp_path: Path) -> None:
    latin = copy.deepcopy(header)
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.PatientName = "Müller^Jörg"
    result = export_dicom(ExportSource(picture, latin), token_map(), tmp_path)
    for path in result.paths:
        dataset = pydicom.dcmread(path)
        assert (dataset.SpecificCharacterSet, str(dataset.PatientName)) == ("ISO_IR 192", "Müller^Jörg")


def test_a_map_without_regions_gives_no_segmentation_and_says_so(header: Dataset, picture: np.ndarray) -> None:
    result = build_export(ExportSource(picture, header), token_map(regions=()))
    assert [o.kind for o in result.objects] == ["secondary_capture", "parametric_map", "presentation_state"]
    assert result.notes[-1] == NO_REGIONS


def test_the_series_descriptions_name_the_kind_the_tokens_and_the_method(exported: ExportResult) -> None:
    assert [read(exported, o.kind).SeriesDescription for o in exported.objects] == [
        "medviz attention overlay: token 12 'effusion' (rollout)",
        "medviz attention map: token 12 'effusion' (rollout)",
        "medviz attention regions: token 12 'effusion' (rollout)",
        "medviz attention outlines: token 12 'effusion' (rollout)",
    ]


def test_a_stand_in_models_export_says_demo_model_in_every_series_description_and_the_note_on_the_capture(
        header: Dataset, picture: np.ndarray) -> None:
    objects = build_export(ExportSource(picture, header), token_map(stand_in=True)).objects
    assert [o.dataset.SeriesDescription for o in objects] == [
        "medviz DEMO MODEL attention overlay: token 12 'effusion' (rollout)"[:63] + "…",
        "medviz DEMO MODEL attention map: token 12 'effusion' (rollout)",
        "medviz DEMO MODEL attention regions: token 12 'effusion' (rollout)"[:63] + "…",
        "medviz DEMO MODEL attention outlines: token 12 'effusion' (rollout)"[:63] + "…",
    ]
    assert objects[0].dataset.ImageComments == (
        "Demo model: untrained vision - the heatmaps show the mechanics of attention, not medicine; "
        "the text is not a report.")


def test_a_real_models_capture_carries_the_smaller_standing_note(header: Dataset, picture: np.ndarray) -> None:
    sc = build_export(ExportSource(picture, header), token_map()).objects[0].dataset
    assert sc.ImageComments == "Model attention, not a diagnosis."
    assert "DEMO" not in sc.SeriesDescription


# --- a PNG / JPEG source --------------------------------------------------------------------


def test_a_png_source_gives_one_secondary_capture_that_says_it_has_no_patient_identity(cxr_dir: Path, tmp_path: Path) -> None:
    picture = load_image((cxr_dir / "commons_haggstrom_normal_pa.jpg").read_bytes())
    result = export_dicom(ExportSource(picture), token_map(description="tokens 3-9"), tmp_path)
    assert [o.kind for o in result.objects] == ["secondary_capture"]
    assert (result.notes, result.has_patient_identity) == ((NO_IDENTITY, NO_SOURCE_OBJECTS), False)
    sc = pydicom.dcmread(result.paths[0])
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyID", "AccessionNumber"):
        assert keyword in sc and sc[keyword].VM == 0, keyword
    assert pydicom.uid.UID(sc.StudyInstanceUID).is_valid and "SourceImageSequence" not in sc
    assert (sc.Rows, sc.Columns) == (899, 786)
    assert (sc.pixel_array == render_overlay(picture, peak_map(), token_map().regions)).all()


# --- refusals write nothing -----------------------------------------------------------------


def _without(header: Dataset, keyword: str) -> Dataset:
    reduced = copy.deepcopy(header)
    delattr(reduced, keyword)
    return reduced


def _with(header: Dataset, **values: Any) -> Dataset:
    changed = copy.deepcopy(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns when a value is invalid for its VR
        for keyword, value in values.items():
            setattr(changed, keyword, value)
    return changed


Refusal = tuple[dict[str, Any], Callable[[Dataset], Dataset] | None, str]  # map changes, header change, message

REFUSALS: dict[str, Refusal] = {
    "float64 map": (dict(relevancy=np.zeros((16, 16))), None, "the map must be a float32 array (grid_h, grid_w); got float64 (16, 16)"),
    "3-d map": (dict(relevancy=np.zeros((1, 16, 16), np.float32)), None, "the map must be a float32 array (grid_h, grid_w); got float32 (1, 16, 16)"),
    "NaN in map": (dict(relevancy=np.where(peak_map() > 1, np.nan, peak_map()).astype(np.float32)), None, "the map has 1 non-finite values; expected all finite"),
    "map finer than image": (dict(relevancy=np.zeros((2048, 16), np.float32)), None, "the map's grid (2048, 16) must have 1 to 1024 rows and 1 to 1024 columns (the picture's)"),
    "unknown method": (dict(method="gradcam"), None, "unknown method 'gradcam'; expected one of raw, layer_weighted, head_importance, flow, rollout, consensus"),
    "empty description": (dict(description=" "), None, "the description must be a non-empty string; got ' '"),
    "vertex out of range": (dict(regions=(rectangle(0.5, 0.5, 1.25, 0.75),)), None, "region 1's vertex 2 is (1.25, 0.5); expected x and y in 0..1"),
    "box out of range": (dict(regions=(Region(((0.1, 0.1), (0.2, 0.1), (0.2, 0.2)), (0.9, 0.1, 0.2, 0.1), 0.5, "left upper"),)), None, "region 1's box is (0.9, 0.1, 0.2, 0.1); expected (x, y, width, height) inside 0..1"),
    "two-vertex polygon": (dict(regions=(Region(((0.1, 0.1), (0.2, 0.2)), (0.1, 0.1, 0.1, 0.1), 0.5, "left upper"),)), None, "region 1's polygon has 2 vertices; expected at least 3"),
    "no SOP Instance UID": ({}, lambda h: _without(h, "SOPInstanceUID"), "the source DICOM header lacks SOPInstanceUID; expected all of SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID"),
    "no Study Instance UID": ({}, lambda h: _without(h, "StudyInstanceUID"), "the source DICOM header lacks StudyInstanceUID; expected all of SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID"),
    "bad Series UID": ({}, lambda h: _with(h, SeriesInstanceUID="1.2.03"), "the source SeriesInstanceUID is not a valid UID: '1.2.03'"),
    "other size": ({}, lambda h: _with(h, Rows=512), "the source header is 512 x 1024 (Rows x Columns); expected the picture's 1024 x 1024"),
    "multi-frame": ({}, lambda h: _with(h, NumberOfFrames=3), "expected a single-frame source image; the source has NumberOfFrames=3"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_input_is_refused_with_one_clear_error_and_writes_nothing(case: str, header: Dataset, picture: np.ndarray, tmp_path: Path) -> None:
    changes, change_header, message = REFUSALS[case]
    source = ExportSource(picture, change_header(header) if change_header else header)
    out = tmp_path / "out"
    with pytest.raises(ExportError) as raised:
        export_dicom(source, token_map(**changes), out)
    assert raised.value.message == message
    assert raised.value.code == "bad_export"
    assert not out.exists()


def test_a_picture_that_is_not_rgb_uint8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^the picture must be a uint8 RGB array \(H, W, 3\); got uint16 \(8, 8, 3\)$"):
        export_dicom(ExportSource(np.zeros((8, 8, 3), np.uint16)), token_map(relevancy=np.zeros((4, 4), np.float32), regions=()), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_is_a_file_is_refused(header: Dataset, picture: np.ndarray, tmp_path: Path) -> None:
    (tmp_path / "taken").write_bytes(b"")
    with pytest.raises(ExportError) as raised:
        export_dicom(ExportSource(picture, header), token_map(), tmp_path / "taken")
    assert raised.value.message == f"the output folder {tmp_path / 'taken'} is a file; expected a folder"
    assert os.listdir(tmp_path) == ["taken"]


@pytest.mark.parametrize("below", ["missing", "a-file"])
def test_an_output_folder_that_cannot_be_made_is_refused(below: str, header: Dataset, picture: np.ndarray, tmp_path: Path) -> None:
    if below == "a-file":
        (tmp_path / below).write_bytes(b"")
    out = tmp_path / below / "out"
    reason = "No such file or directory" if below == "missing" else "Not a directory"
    with pytest.raises(ExportError) as raised:
        export_dicom(ExportSource(picture, header), token_map(), out)
    assert raised.value.message == f"cannot create the output folder {out}: {reason}"
    assert os.listdir(tmp_path) == ([] if below == "missing" else ["a-file"])


def test_a_write_that_fails_half_way_leaves_nothing(header: Dataset, picture: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []
    real_write = pydicom.dcmwrite

    def failing_write(path: Path, dataset: Dataset, **kwargs: Any) -> None:
        if written:
            raise OSError(28, "No space left on device")
        written.append(Path(path))
        real_write(path, dataset, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", failing_write)
    with pytest.raises(ExportError) as raised:
        export_dicom(ExportSource(picture, header), token_map(), tmp_path / "out")
    assert raised.value.message == f"cannot write the export into {tmp_path / 'out'}: No space left on device"
    assert written and not written[0].exists()
    assert os.listdir(tmp_path) == []  # the folder made for this export is gone too


def test_a_rename_that_fails_after_the_first_file_takes_the_first_back(header: Dataset, picture: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.txt").write_text("an earlier file")
    renamed: list[str] = []
    real_rename = os.rename

    def failing_rename(source: Path, target: Path) -> None:
        if renamed:
            raise OSError(5, "Input/output error")
        renamed.append(str(target))
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(ExportError, match="Input/output error$"):
        export_dicom(ExportSource(picture, header), token_map(), tmp_path)
    assert os.listdir(tmp_path) == ["keep.txt"]  # an existing folder keeps what it had, and nothing new


# --- conformance: validators no one here wrote -------------------------------------------------


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines of dicom3tools' IOD validator."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed (Debian package dicom3tools; ./dev test installs it)")
needs_dcmtk = pytest.mark.skipif(shutil.which("dcmftest") is None or shutil.which("dcmdump") is None, reason="dcmftest/dcmdump not installed (Debian package dcmtk; ./dev test installs it)")

SOURCE_WARNINGS = {
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Date",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Time",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID",
    "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <Covid0000> - Retired Person Name form",
}
"""dciodvfy's warnings on the objects that come from the source's own values (checked below)."""


@needs_dciodvfy
def test_dciodvfy_finds_the_copied_warnings_in_the_source_file_itself(cxr_dir: Path) -> None:
    _, warnings = dciodvfy(cxr_dir / SOURCE)
    assert SOURCE_WARNINGS <= set(warnings)


def anatomy_header(header: Dataset) -> Dataset:
    return _with(header, BodyPartExamined="CHEST", ImageLaterality="U", PatientOrientation=["L", "F"])


def test_anatomy_attributes_of_the_source_are_copied_where_each_object_allows_them(header: Dataset, picture: np.ndarray) -> None:
    sc, pm, seg, pr = (o.dataset for o in build_export(ExportSource(picture, anatomy_header(header)), token_map()).objects)
    keywords = ("BodyPartExamined", "ImageLaterality", "PatientOrientation", "Laterality")
    assert [sc.get(k) for k in keywords] == ["CHEST", "U", ["L", "F"], None]
    assert [pm.get(k) for k in keywords] == ["CHEST", "U", None, None]
    assert [seg.get(k) for k in keywords] == ["CHEST", None, ["L", "F"], None]
    assert [pr.get(k) for k in keywords] == ["CHEST", None, None, None]
    assert "Laterality" not in sc and "Laterality" not in pm  # not required with a body part


SOURCES: dict[str, Callable[[Dataset], Dataset]] = {
    "source-as-is": lambda h: h,
    "source-in-patient-space": geometry_header,
    "source-with-anatomy": anatomy_header,
}


@needs_dciodvfy
@pytest.mark.parametrize("variant", list(SOURCES))
def test_dciodvfy_reports_no_error_for_any_object_of_a_dicom_source(variant: str, header: Dataset, picture: np.ndarray, tmp_path: Path) -> None:
    result = export_dicom(ExportSource(picture, SOURCES[variant](header)), token_map(), tmp_path)
    # Laterality is written empty (unknown) only when the source gives no body part or image laterality.
    unknown = set() if variant == "source-with-anatomy" else {LATERALITY_UNKNOWN}
    expected = {"secondary_capture": SOURCE_WARNINGS | unknown, "parametric_map": SOURCE_WARNINGS | unknown,
                "segmentation": SOURCE_WARNINGS, "presentation_state": SOURCE_WARNINGS | unknown}
    assert [o.kind for o in result.objects] == list(expected)
    for o in result.objects:
        assert o.path is not None
        errors, warnings = dciodvfy(o.path)
        assert (o.kind, errors) == (o.kind, [])
        assert (o.kind, set(warnings)) == (o.kind, expected[o.kind])


@needs_dciodvfy
def test_dciodvfy_reports_no_error_for_the_secondary_capture_of_a_png(cxr_dir: Path, tmp_path: Path) -> None:
    picture = load_image((cxr_dir / "nih_00000001_000.png").read_bytes())
    result = export_dicom(ExportSource(picture), token_map(description="tokens 3-9 «é»"), tmp_path)
    errors, warnings = dciodvfy(result.paths[0])
    assert errors == []
    assert set(warnings) == {
        "Warning - Missing attribute or value that would be needed to build DICOMDIR - Patient ID",
        "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Date",
        "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Time",
        "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID",
        LATERALITY_UNKNOWN,
    }


@needs_dcmtk
def test_dcmtk_reads_every_object_as_a_valid_dicom_file(exported: ExportResult) -> None:
    for path in exported.paths:
        check = subprocess.run(["dcmftest", str(path)], capture_output=True, text=True, timeout=60)
        assert (check.returncode, check.stdout.strip()) == (0, f"yes: {path}")
        dump = subprocess.run(["dcmdump", "-q", str(path)], capture_output=True, text=True, timeout=60)
        assert (dump.returncode, dump.stderr) == (0, "")
