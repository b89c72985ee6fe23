"""Sending into a study only where the PACS's study really holds the source image under the same patient, on the real
Orthanc: an uploaded DICOM that names another patient's StudyInstanceUID (a forged header) writes nothing there."""

from __future__ import annotations

import io
from collections.abc import Callable

import pydicom
import pytest
from pydicom.uid import generate_uid

from server.pacs.client import PacsClient
from server.pacs.errors import PacsQueryError
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


def test_a_source_image_the_study_does_not_hold_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    victim = stored_study("PAT-VICTIM-1", "ACC-VICTIM-1")
    forged = header(victim, SOPInstanceUID=generate_uid())  # the victim's study UID, an image it never held
    with pytest.raises(PacsQueryError) as error:
        send_objects(pacs, victim.study_uid, [result_object(victim)], [forged])
    assert error.value.message == "the PACS's study does not hold this session's source image: nothing sent"
    assert len(orthanc.study_series(victim.study_uid)) == 1


def test_a_source_image_held_under_another_patient_sends_nothing(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    victim = stored_study("PAT-VICTIM-2", "ACC-VICTIM-2")
    forged = header(victim, PatientID="PAT-ATTACKER-2")  # the very instance, named as another patient's
    with pytest.raises(PacsQueryError) as error:
        send_objects(pacs, victim.study_uid, [result_object(victim)], [forged])
    assert error.value.message == ("the PACS's study holds this session's source image under another patient: "
                                   "nothing sent")
    assert len(orthanc.study_series(victim.study_uid)) == 1


def test_the_study_holding_the_source_under_its_patient_takes_the_objects(
        orthanc: Orthanc, pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-OWN-1", "ACC-OWN-1")
    report = send_objects(pacs, study.study_uid, [result_object(study)], [header(study)])
    assert (report.sent, report.already, report.failed) == (("medviz overlay",), (), ())
    assert len(orthanc.study_series(study.study_uid)) == 2
