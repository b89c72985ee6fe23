"""A test DICOM that names its patient: the NIH DX beside the repo with identifying values set by pydicom, and the
search for any of them (or its original UIDs) in bytes a recording, a log or an answer holds."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

SOURCE = "nih_00000002_000_dx.dcm"
IDENTITY = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "MRN-4711-0815",
    "PatientBirthDate": "19450312",
    "AccessionNumber": "ACC-99-123456",
    "InstitutionName": "Saint Elsewhere Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "StudyID": "STUDY-7788",
    "StudyDate": "20240105",
    "OtherPatientIDs": "OTHER-ID-31337",
}
UIDS = {  # the original UIDs, which must not survive either
    "StudyInstanceUID": "1.2.826.0.1.3680043.2.1125.99.1001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.2.1125.99.1002",
    "SOPInstanceUID": "1.2.826.0.1.3680043.2.1125.99.1003",
}


def identified_dicom(cxr_dir: Path, **changes: str) -> bytes:
    """The NIH DX with IDENTITY and UIDS set (and `changes`, e.g. BurnedInAnnotation="YES"), as file bytes."""
    dataset = pydicom.dcmread(cxr_dir / SOURCE)
    for keyword, value in {**IDENTITY, **UIDS, **changes}.items():
        setattr(dataset, keyword, value)
    dataset.file_meta.MediaStorageSOPInstanceUID = UIDS["SOPInstanceUID"]
    dataset.add_new((0x0011, 0x0010), "LO", "ACME HOSPITAL PACS")  # a private block naming the patient again
    dataset.add_new((0x0011, 0x1001), "LO", "private Doe Jane note")
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


NEEDLES = tuple(v.encode() for v in (*IDENTITY.values(), *UIDS.values(), "ACME HOSPITAL PACS", "private Doe Jane"))


def leaks(data: bytes) -> list[str]:
    """Which identifying values or original UIDs `data` holds (as bytes, anywhere): [] when none."""
    return [needle.decode() for needle in NEEDLES if needle in data]


def header_of(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)
