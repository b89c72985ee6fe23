"""The DICOMweb client against a real Orthanc: search, series, instances, retrieve, thumbnails, stored UIDs."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import pydicom
import pytest
from PIL import Image

from server.pacs.client import PacsClient, StudyQuery
from server.pacs.errors import PacsNotFound, PacsQueryError
from tests.pacs.fixtures import PacsStudy


def test_a_stored_study_is_found_by_patient_id_and_by_accession(pacs: PacsClient,
                                                                 stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-FIND-1", "ACC-FIND-1")
    by_id = pacs.find_studies(StudyQuery(patient_id="PAT-FIND-1"))
    by_accession = pacs.find_studies(StudyQuery(accession="ACC-FIND-1"))
    assert [s.study_uid for s in by_id.studies] == [study.study_uid]
    assert by_accession.studies == by_id.studies
    found = by_id.studies[0]
    assert (found.patient_id, found.accession, found.study_date, found.modalities) == (
        "PAT-FIND-1", "ACC-FIND-1", "20240115", ("DX",))
    assert (found.series_count, found.instance_count, by_id.offset, by_id.more) == (1, 1, 0, False)


def test_a_search_by_date_range_and_modality_finds_it_and_another_date_does_not(
        pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-DATE-1", "ACC-DATE-1")
    inside = pacs.find_studies(StudyQuery(patient_id="PAT-DATE-1", study_date="20240101-20240131", modality="dx"))
    open_end = pacs.find_studies(StudyQuery(patient_id="PAT-DATE-1", study_date="20240110-"))
    outside = pacs.find_studies(StudyQuery(patient_id="PAT-DATE-1", study_date="-20231231"))
    assert [s.study_uid for s in inside.studies] == [study.study_uid]
    assert [s.study_uid for s in open_end.studies] == [study.study_uid]
    assert outside.studies == ()


def test_results_are_paged_and_capped_at_max_results(orthanc, pacs_config, stored_study) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    for n in range(5):
        stored_study(f"PAT-PAGE-{n}", f"ACC-PAGE-{n}")
    config = dataclasses.replace(pacs_config, page_size=2, max_results=3)
    with PacsClient(config) as client:
        first = client.find_studies(StudyQuery(patient_id="PAT-PAGE-*"))
        second = client.find_studies(StudyQuery(patient_id="PAT-PAGE-*"), offset=2)
        third = client.find_studies(StudyQuery(patient_id="PAT-PAGE-*"), offset=3)
    assert (len(first.studies), first.more) == (2, True)
    assert (len(second.studies), second.offset, second.more) == (1, 2, False)
    assert (third.studies, third.more) == ((), False)
    assert not {s.study_uid for s in first.studies} & {s.study_uid for s in second.studies}


def test_series_and_instances_say_what_the_study_holds(pacs: PacsClient,
                                                        stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-SER-1", "ACC-SER-1", view="AP")
    series = pacs.series(study.study_uid)
    instances = pacs.instances(study.study_uid)
    assert [(s.series_uid, s.modality, s.instance_count) for s in series] == [(study.series_uid, "DX", 1)]
    assert [(i.series_uid, i.sop_uid, i.sop_class_uid, i.view_position, i.frames, i.rows, i.columns)
            for i in instances] == [(study.series_uid, study.sop_uid, "1.2.840.10008.5.1.4.1.1.7", "AP", 1, 1024,
                                     1024)]
    assert pacs.instances(study.study_uid, study.series_uid) == instances


def test_retrieve_gives_the_same_sop_instance_as_a_part10_file(pacs: PacsClient,
                                                               stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-GET-1", "ACC-GET-1")
    data = pacs.retrieve(study.study_uid, study.series_uid, study.sop_uid)
    header = pydicom.dcmread(io.BytesIO(data))
    assert data[128:132] == b"DICM"
    assert (header.SOPInstanceUID, header.PatientID, header.Rows) == (study.sop_uid, "PAT-GET-1", 1024)


def test_a_thumbnail_is_a_jpeg_of_the_size_asked(pacs: PacsClient, stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-THUMB-1", "ACC-THUMB-1")
    thumbnail = pacs.thumbnail(study.study_uid, study.series_uid, study.sop_uid, size=96)
    with Image.open(io.BytesIO(thumbnail)) as picture:
        assert (picture.format, max(picture.size)) == ("JPEG", 96)


def test_stored_sop_uids_names_only_those_the_study_holds(pacs: PacsClient,
                                                          stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-HELD-1", "ACC-HELD-1")
    other = stored_study("PAT-HELD-1", "ACC-HELD-1", study_uid=study.study_uid)
    stored_study("PAT-HELD-1", "ACC-HELD-1", study_uid=study.study_uid)  # held, not asked for
    assert pacs.stored_sop_uids(study.study_uid, [study.sop_uid, "1.2.3.4"]) == frozenset({study.sop_uid})
    assert pacs.stored_sop_uids(study.study_uid, [study.sop_uid, other.sop_uid, "1.2.3.4"]) == frozenset(
        {study.sop_uid, other.sop_uid})
    assert pacs.stored_sop_uids("1.2.3.4.5", [study.sop_uid]) == frozenset()


def test_a_deleted_study_is_not_found_in_one_sentence(orthanc, pacs: PacsClient, stored_study) -> None:  # type: ignore[no-untyped-def]
    study = stored_study("PAT-GONE-1", "ACC-GONE-1")
    orthanc.delete_study(study.study_uid)
    with pytest.raises(PacsNotFound) as series:
        pacs.series(study.study_uid)
    with pytest.raises(PacsNotFound) as retrieve:
        pacs.retrieve(study.study_uid, study.series_uid, study.sop_uid)
    assert series.value.message == f"the PACS at {orthanc.dicomweb} holds no study {study.study_uid}"
    assert retrieve.value.message == (f"the PACS at {orthanc.dicomweb} holds no instance {study.sop_uid} of study "
                                      f"{study.study_uid} (HTTP 404)")


@pytest.mark.parametrize("bad", ["1.2/../3", "..", "1.2.3/series", "1.02.3", "", "1." + "2" * 70])
def test_a_uid_that_is_not_a_uid_never_reaches_a_url(pacs: PacsClient, bad: str) -> None:
    with pytest.raises(PacsQueryError) as error:
        pacs.series(bad)
    assert error.value.message == ("the study UID must be a DICOM UID (digits and dots, at most 64 characters); "
                                   f"got {bad[:80]!r}")


def test_a_malformed_search_is_refused_before_anything_is_sent(pacs: PacsClient) -> None:
    with pytest.raises(PacsQueryError) as date:
        pacs.find_studies(StudyQuery(study_date="2024-01-01"))
    with pytest.raises(PacsQueryError) as modality:
        pacs.find_studies(StudyQuery(modality="C R"))
    assert date.value.message == ("the study date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may be "
                                  "left open); got '2024-01-01'")
    assert modality.value.message == "the modality must be a DICOM modality code such as CR or DX; got 'C R'"


def test_no_log_line_names_a_searched_patient_or_a_uid(pacs: PacsClient, stored_study: Callable[..., PacsStudy],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    study = stored_study("PAT-LOG-1", "ACC-LOG-1")
    with caplog.at_level(logging.INFO):
        pacs.find_studies(StudyQuery(patient_id="PAT-LOG-1"))
        pacs.retrieve(study.study_uid, study.series_uid, study.sop_uid)
    assert [r.getMessage() for r in caplog.records if "PAT-LOG-1" in r.getMessage() or study.study_uid in
            r.getMessage()] == []
