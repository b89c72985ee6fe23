"""A test DICOM that names its patient: the NIH DX beside the repo with identifying values set by pydicom (and
sequences that reference other instances, a procedure step and a dated content item with an AT value), and the
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
REFERENCED = {  # the instances its sequences reference (original UIDs too), and the class UIDs kept as they are
    "image": "1.2.826.0.1.3680043.2.1125.99.1004",  # ReferencedImageSequence and SourceImageSequence
    "procedure step": "1.2.826.0.1.3680043.2.1125.99.1005",  # ReferencedPerformedProcedureStepSequence
}
DX_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class


def identified_dicom(cxr_dir: Path, **changes: str) -> bytes:
    """The NIH DX with IDENTITY and UIDS set (and `changes`, e.g. BurnedInAnnotation="YES"), as file bytes."""
    dataset = pydicom.dcmread(cxr_dir / SOURCE)
    for keyword, value in {**IDENTITY, **UIDS, **changes}.items():
        setattr(dataset, keyword, value)
    dataset.file_meta.MediaStorageSOPInstanceUID = UIDS["SOPInstanceUID"]
    dataset.add_new((0x0011, 0x0010), "LO", "ACME HOSPITAL PACS")  # a private block naming the patient again
    dataset.add_new((0x0011, 0x1001), "LO", "private Doe Jane note")
    dataset.ReferencedImageSequence = [reference(DX_CLASS, REFERENCED["image"])]  # X/Z/U*
    dataset.SourceImageSequence = [reference(DX_CLASS, REFERENCED["image"])]  # X/Z/U*
    dataset.ReferencedPerformedProcedureStepSequence = [reference(MPPS_CLASS, REFERENCED["procedure step"])]  # X/Z/D
    content = Dataset()  # ContentSequence: D
    content.Date, content.PersonName = IDENTITY["StudyDate"], IDENTITY["ReferringPhysicianName"]
    content.TextValue = f"seen with {IDENTITY['PatientName']}"  # a TEXT item's free text
    content.add_new((0x0072, 0x0060), "AT", [0x00100010])  # SelectorATValue: a VR the library cannot replace
    dataset.ContentSequence = [content]
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


def reference(class_uid: str, instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = class_uid, instance_uid
    return item


NEEDLES = tuple(v.encode() for v in (*IDENTITY.values(), *UIDS.values(), *REFERENCED.values(), "ACME HOSPITAL PACS",
                                     "private Doe Jane"))


def leaks(data: bytes) -> list[str]:
    """Which identifying values or original UIDs `data` holds (as bytes, anywhere): [] when none."""
    return [needle.decode() for needle in NEEDLES if needle in data]


def header_of(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)
