"""Sending into a study only where the PACS's study really holds the source image under the same patient, on the real
Orthanc: an uploaded DICOM that names another patient's StudyInstanceUID (a forged header) writes nothing there, nor
does one whose PatientID, or the PACS's, is absent or empty (nothing to verify the patient by)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pydicom
import pytest
from pydicom.uid import generate_uid

from server.pacs.client import PacsClient
from server.pacs.errors import PacsQueryError, PacsUnverifiedSource
from server.pacs.send import send_objects
from tests.orthanc import Orthanc
from tests.pacs.fixtures import PacsStudy


def header(study: PacsStudy, **changes: str) -> pydicom.Dataset:
    dataset = pydicom.dcmread(io.BytesIO(study.dicom))
    for name, value in changes.items():
        setattr(dataset, name, value)
    return dataset


def result_object(study: PacsStudy) -> tuple[str, pydicom.Dataset]:
    return "secondary_capture", header(study, SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                                       SeriesDescription="medviz overlay")


def refusal(orthanc: Orthanc, pacs: PacsClient, study: PacsStudy, source: pydicom.Dataset) -> PacsQueryError:
    """The error a send of one result object with `source` into `study` raises; Orthanc's study is left as it was."""
    with pytest.raises(PacsQueryError) as error:
        send_objects(pacs, study.study_uid, [result_object(study)], [source])
    assert len(orthanc.study_series(study.study_uid)) == 1
    return error.value


def test_a_source_image_the_study_does_not_hold_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    victim = stored_study("PAT-VICTIM-1", "ACC-VICTIM-1")
    forged = header(victim, SOPInstanceUID=generate_uid())  # the victim's study UID, an image it never held
    error = refusal(orthanc, pacs, victim, forged)
    assert error.message == "the PACS's study does not hold this session's source image: nothing sent"


def test_a_source_image_held_under_another_patient_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    victim = stored_study("PAT-VICTIM-2", "ACC-VICTIM-2")
    forged = header(victim, PatientID="PAT-ATTACKER-2")  # the very instance, named as another patient's
    error = refusal(orthanc, pacs, victim, forged)
    assert error.message == "the PACS's study holds this session's source image under another patient: nothing sent"


def test_the_study_holding_the_source_under_its_patient_takes_the_objects(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-OWN-1", "ACC-OWN-1")
    report = send_objects(pacs, study.study_uid, [result_object(study)], [header(study)])
    assert (report.sent, report.already, report.failed) == (("medviz overlay",), (), ())
    assert len(orthanc.study_series(study.study_uid)) == 2


def test_a_forged_header_with_an_empty_patient_id_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    victim = stored_study("PAT-VICTIM-3", "ACC-VICTIM-3")
    error = refusal(orthanc, pacs, victim, header(victim, PatientID=""))  # the very instance, its patient emptied
    assert isinstance(error, PacsUnverifiedSource)
    assert error.message == "cannot verify the source's patient: the source image's header names no PatientID: nothing sent"


def test_a_header_without_a_patient_id_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    victim = stored_study("PAT-VICTIM-4", "ACC-VICTIM-4")
    forged = header(victim)
    del forged.PatientID
    error = refusal(orthanc, pacs, victim, forged)
    assert isinstance(error, PacsUnverifiedSource)
    assert error.message == "cannot verify the source's patient: the source image's header names no PatientID: nothing sent"


def test_a_source_the_pacs_holds_without_a_patient_id_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("", "ACC-NO-PATIENT-1")  # the PACS holds the image with an empty PatientID
    error = refusal(orthanc, pacs, study, header(study, PatientID="PAT-CLAIMED-1"))
    assert isinstance(error, PacsUnverifiedSource)
    assert error.message == ("cannot verify the source's patient: the PACS's study holds the source image without a "
                             "PatientID: nothing sent")
