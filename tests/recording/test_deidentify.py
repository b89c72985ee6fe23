"""De-identification of a recording's DICOM headers (recording/deidentify.py): the Basic Application Level
Confidentiality Profile through dicom-anonymizer, UIDs replaced consistently within one recording, dates emptied,
the burned-in refusal, and exports of a de-identified header that dciodvfy passes and that reference each other."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from medviz_core.errors import ImageError
from medviz_core.export.dicom import ExportSource, export_dicom
from medviz_core.imaging.dicom import dicom_header
from medviz_core.imaging.load import load_image
from medviz_core.recording.deidentify import (
    PROFILE,
    BurnedInAnnotationError,
    Deidentifier,
    check_burned_in,
    is_deidentified,
)
from medviz_core.wire.server_frames import SourceFrame, decode
from tests.export.test_dicom_export import token_map
from tests.identified import DX_CLASS, MPPS_CLASS, REFERENCED, UIDS, header_of, identified_dicom, leaks


@pytest.fixture(scope="module")
def original(cxr_dir: Path) -> bytes:
    return identified_dicom(cxr_dir, AcquisitionDate="20240105", BurnedInAnnotation="NO")


@pytest.fixture(scope="module")
def header(original: bytes) -> bytes:
    found = dicom_header(original)
    assert found is not None and leaks(found) != []
    return found


def test_a_deidentified_header_holds_none_of_the_identifying_values_nor_the_original_uids(header: bytes) -> None:
    assert leaks(Deidentifier().header(header)) == []


def test_a_deidentified_header_names_the_profile_it_went_through(header: bytes) -> None:
    cleaned = header_of(Deidentifier().header(header))
    code = cleaned.DeidentificationMethodCodeSequence[0]
    assert (cleaned.PatientIdentityRemoved, cleaned.DeidentificationMethod) == ("YES", PROFILE)
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "113100", "DCM", "Basic Application Confidentiality Profile")



def test_only_medvizs_own_mark_says_a_source_frame_is_deidentified_never_the_dicom_tag(cxr_dir: Path) -> None:
    marked_by_another_tool = dicom_header(identified_dicom(cxr_dir, PatientIdentityRemoved="YES"))
    assert not is_deidentified(SourceFrame((marked_by_another_tool,)))  # it still names the patient
    assert is_deidentified(SourceFrame((Deidentifier().header(marked_by_another_tool),), deidentified=True))
    assert is_deidentified(None) and is_deidentified(SourceFrame((None,)))  # PNG/JPEG: nothing to hide
    assert SourceFrame((None,), deidentified=True).to_wire() != SourceFrame((None,)).to_wire()
    assert [decode(SourceFrame((None,), deidentified=d).to_wire()) for d in (True, False)] == [
        SourceFrame((None,), deidentified=True), SourceFrame((None,))]


def test_uids_are_replaced_by_the_same_new_uid_within_one_recording_and_by_others_in_another(header: bytes) -> None:
    recording, other = Deidentifier(), Deidentifier()
    first, again, elsewhere = (header_of(d.header(header)) for d in (recording, recording, other))
    keywords = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    assert [first.get(k) for k in keywords] == [again.get(k) for k in keywords]
    assert all(first.get(k) != elsewhere.get(k) for k in keywords)
    assert first.StudyInstanceUID == recording.uid(UIDS["StudyInstanceUID"])
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.StudyInstanceUID.startswith("2.25.") and len(first.StudyInstanceUID) <= 64
    assert first.SOPClassUID == header_of(header).SOPClassUID  # a class UID is not identity: kept


def test_dates_are_emptied_or_removed_and_never_a_dummy_date(header: bytes) -> None:
    cleaned = header_of(Deidentifier().header(header))
    assert (cleaned.StudyDate, cleaned.PatientBirthDate) == ("", "")  # Z: present, empty (Type 2)
    assert "AcquisitionDate" not in cleaned  # X/Z: removed
    assert b"00010101" not in Deidentifier().header(header)


def test_private_attributes_and_names_inside_sequences_are_removed(header: bytes) -> None:
    dataset = header_of(header)
    item = pydicom.Dataset()
    item.PersonName, item.ReferencedSOPInstanceUID = "Nested^Name^Here", UIDS["SOPInstanceUID"]
    dataset.AnatomicRegionSequence = [item]
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=False)
    recording = Deidentifier()
    cleaned = header_of(recording.header(out.getvalue()))
    nested = cleaned.AnatomicRegionSequence[0]
    assert (nested.PersonName, nested.ReferencedSOPInstanceUID) == ("ANONYMIZED", recording.uid(UIDS["SOPInstanceUID"]))
    assert [e for e in cleaned if e.tag.is_private] == []


def test_the_clinical_values_exports_need_are_kept(header: bytes) -> None:
    cleaned, source = header_of(Deidentifier().header(header)), header_of(header)
    keywords = ("Modality", "Rows", "Columns", "PhotometricInterpretation", "BurnedInAnnotation", "SOPClassUID")
    assert [cleaned.get(k) for k in keywords] == [source.get(k) for k in keywords]


def test_burned_in_annotation_is_refused_with_one_line_naming_the_tag_and_the_option(cxr_dir: Path) -> None:
    burned = dicom_header(identified_dicom(cxr_dir, BurnedInAnnotation="YES"))
    with pytest.raises(BurnedInAnnotationError) as refused:
        check_burned_in((None, burned), "--allow-burned-in")
    assert refused.value.message == (
        "image 2 says BurnedInAnnotation (0028,0301) = YES: text drawn into its pixels may name the patient, and "
        "de-identifying the header cannot remove it; pass --allow-burned-in to record it anyway")
    assert refused.value.code == "bad_image"


def test_an_image_that_says_no_burned_in_annotation_or_nothing_passes(header: bytes, cxr_dir: Path) -> None:
    check_burned_in((header, dicom_header((cxr_dir / "nih_00000002_000_dx.dcm").read_bytes()), None), "--x")


needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed (Debian package dicom3tools; ./dev test installs it)")


@needs_dciodvfy
def test_exports_of_a_deidentified_header_pass_dciodvfy_and_reference_the_new_uids(original: bytes, header: bytes,
                                                                                  tmp_path: Path) -> None:
    cleaned = header_of(Deidentifier().header(header))
    result = export_dicom(ExportSource(load_image(original), cleaned), token_map(), tmp_path)
    assert len(result.paths) == 4
    for path in result.paths:
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
        assert (path.name, errors) == (path.name, [])
        exported = pydicom.dcmread(path)
        assert leaks(path.read_bytes()) == []
        assert (exported.StudyInstanceUID, exported.PatientIdentityRemoved) == (cleaned.StudyInstanceUID, "YES")
        assert exported.PatientName == "" and exported.PatientID == "ANONYMIZED"


def test_the_librarys_own_process_wide_uid_table_is_never_used(header: bytes) -> None:
    from dicomanonymizer.simpledicomanonymizer import dictionary

    Deidentifier().header(header)
    assert dictionary == {}


def test_sequences_are_cleaned_by_medvizs_rules_references_mapped_as_the_referenced_image_class_uids_kept(
        header: bytes, cxr_dir: Path) -> None:
    from dicomanonymizer.simpledicomanonymizer import dictionary

    recording = Deidentifier()
    cleaned_bytes = recording.header(header)
    cleaned = header_of(cleaned_bytes)
    referenced = header_of(recording.header(dicom_header(identified_dicom(cxr_dir,
                                                                          SOPInstanceUID=REFERENCED["image"]))))
    references = (*cleaned.ReferencedImageSequence, *cleaned.SourceImageSequence)
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in references] == [
        (DX_CLASS, referenced.SOPInstanceUID)] * 2
    step = cleaned.ReferencedPerformedProcedureStepSequence[0]
    assert (step.ReferencedSOPClassUID, step.ReferencedSOPInstanceUID) == (
        MPPS_CLASS, recording.uid(REFERENCED["procedure step"]))
    content = cleaned.ContentSequence[0]
    assert (content.Date, content.PersonName, content[0x0072, 0x0060].value) == ("", "ANONYMIZED", 0x00100010)
    assert "TextValue" not in content
    assert b"00010101" not in cleaned_bytes and leaks(cleaned_bytes) == []
    assert dictionary == {}


def test_a_header_the_rules_cannot_clean_fails_in_one_typed_line(header: bytes) -> None:
    from pydicom.uid import ExplicitVRLittleEndian

    dataset = header_of(header)
    del dataset.PatientID
    dataset.add_new((0x0010, 0x0020), "OW", b"MRN-4711")  # a patient ID whose VR the profile's dummy cannot replace
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # so the VR is read back as written
    out = io.BytesIO()
    dataset.save_as(out, implicit_vr=False, little_endian=True)
    with pytest.raises(ImageError) as failed:
        Deidentifier().header(out.getvalue())
    assert failed.value.message == ("a recorded DICOM header could not be de-identified (NotImplementedError: Not "
                                    "anonymized. VR OW not yet implemented.)")
    assert failed.value.code == "bad_image"
