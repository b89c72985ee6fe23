"""The PACS fixtures of every test folder: one real Orthanc for the whole run (tests/orthanc.py), a client logged in
to it, and test studies made from the sample DICOM with new UIDs and the patient ID and accession a test names.

Registered once for the run by tests/conftest.py (`pytest_plugins`): a test uses `orthanc`, `pacs_config`, `pacs`,
`sample_dicom` and `stored_study` without importing them. A module that still imports a fixture registers it again;
`orthanc` then hands it the same server (`_Shared`), so no second Orthanc starts."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from server.pacs.client import PacsClient
from server.pacs.config import PacsConfig
from tests.orthanc import NOT_INSTALLED, ORTHANC, USER, Orthanc

SAMPLE_DICOM = "nih_00000002_000_dx.dcm"


@dataclass(frozen=True)
class PacsStudy:
    study_uid: str
    series_uid: str
    sop_uid: str
    dicom: bytes


class _Shared:
    """The run's one Orthanc, started at its first user and stopped after its last."""

    server: Orthanc | None = None
    users = 0


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    if ORTHANC is None:
        pytest.skip(NOT_INSTALLED)
    if _Shared.server is None:
        _Shared.server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    _Shared.users += 1
    yield _Shared.server
    _Shared.users -= 1
    if _Shared.users == 0:
        _Shared.server.stop()
        _Shared.server = None


@pytest.fixture(scope="session")
def pacs_config(orthanc: Orthanc) -> PacsConfig:
    return PacsConfig(orthanc.dicomweb, user=USER, password=orthanc.password)


@pytest.fixture
def pacs(pacs_config: PacsConfig) -> Iterator[PacsClient]:
    with PacsClient(pacs_config) as client:
        yield client


def dicom_copy(source: bytes, patient_id: str, accession: str, view: str = "PA", study_uid: str | None = None,
               **changes: object) -> PacsStudy:
    """The sample with new UIDs (in `study_uid` if given), this patient ID, accession and ViewPosition."""
    header = pydicom.dcmread(io.BytesIO(source))
    header.StudyInstanceUID = study_uid or generate_uid()
    header.SeriesInstanceUID = generate_uid()
    header.SOPInstanceUID = generate_uid()
    header.file_meta.MediaStorageSOPInstanceUID = header.SOPInstanceUID
    header.PatientID = patient_id
    header.AccessionNumber = accession
    header.ViewPosition = view
    header.StudyDate = "20240115"
    for name, value in changes.items():
        setattr(header, name, value)
    out = io.BytesIO()
    header.save_as(out, enforce_file_format=True)
    return PacsStudy(str(header.StudyInstanceUID), str(header.SeriesInstanceUID), str(header.SOPInstanceUID),
                     out.getvalue())


@pytest.fixture(scope="session")
def sample_dicom(cxr_dir: Path) -> bytes:
    return (cxr_dir / SAMPLE_DICOM).read_bytes()


@pytest.fixture
def stored_study(orthanc: Orthanc, sample_dicom: bytes) -> Callable[..., PacsStudy]:
    """Stores a copy of the sample into Orthanc: stored_study(patient_id, accession, ...) -> PacsStudy."""

    def store(patient_id: str, accession: str, **kwargs: object) -> PacsStudy:
        study = dicom_copy(sample_dicom, patient_id, accession, **kwargs)  # type: ignore[arg-type]
        orthanc.upload(study.dicom)
        return study

    return store
