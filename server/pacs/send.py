"""Sending an export's objects into their study in the PACS (STOW-RS), once.

Owns: `send_objects` (the objects of medviz_core/export/dicom.build_export, each checked to belong to the study,
and nothing sent unless the PACS's study holds each source image under the source header's PatientID, so that an
uploaded DICOM naming another patient's StudyInstanceUID writes nothing into that study: `check_sources`; a
PatientID absent or empty on either side verifies nothing and sends nothing, PacsUnverifiedSource; those the
PACS already holds, by SOP Instance UID, are not sent again and said so; the rest stored in one STOW-RS request) and
`SendReport` (what was sent, already there, or refused with the PACS's reason in words; `message()` is the one line
a user reads, `raise_for_failures()` the PacsStorePartial a caller raises when anything was refused). Does not own
building the objects (medviz_core/export/) nor HTTP (client.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from server.pacs.client import PacsClient
from server.pacs.errors import PacsQueryError, PacsStorePartial, PacsUnverifiedSource

REASONS = {  # PS3.4 C.4.2.1.4 and PS3.18 Table 10.5.3-1: the FailureReason codes a STOW-RS answer names
    0x0107: "attribute list error",
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA770: "transfer syntax not supported",
    0xA900: "does not match its SOP class",
    0xB000: "coercion of data elements",
    0xB006: "elements discarded",
    0xB007: "does not match its SOP class",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
}


@dataclass(frozen=True)
class SendReport:
    study_uid: str
    sent: tuple[str, ...]  # series descriptions of the objects stored now
    already: tuple[str, ...]  # those the PACS held already (not sent again)
    failed: tuple[tuple[str, str], ...]  # (series description, the PACS's reason) of each refused object

    def message(self) -> str:
        """One line: what was stored, what was there already, what was refused and why."""
        total = len(self.sent) + len(self.already) + len(self.failed)
        parts = []
        if self.sent:
            parts.append(f"stored {len(self.sent)} of {total} objects into study {self.study_uid}")
        if self.already:
            parts.append(f"{len(self.already)} of {total} were already in the PACS and were not sent again"
                         if self.sent or self.failed else
                         f"all {total} objects were already in study {self.study_uid} and were not sent again")
        if self.failed:
            refused = "; ".join(f"{series}: {reason}" for series, reason in self.failed)
            parts.append(f"{len(self.failed)} of {total} objects were refused: {refused}")
        return "; ".join(parts) if parts else "nothing to send"

    def raise_for_failures(self) -> None:
        """PacsStorePartial (this report's message) when the PACS refused any object."""
        if self.failed:
            raise PacsStorePartial(f"the PACS did not store everything: {self.message()}")


NOT_HELD = "the PACS's study does not hold this session's source image: nothing sent"
OTHER_PATIENT = "the PACS's study holds this session's source image under another patient: nothing sent"
NO_SOURCE = "no source image with a DICOM header ties these objects to a study in the PACS: nothing sent"
NO_HEADER_PATIENT = "cannot verify the source's patient: the source image's header names no PatientID: nothing sent"
NO_PACS_PATIENT = ("cannot verify the source's patient: the PACS's study holds the source image without a PatientID: "
                   "nothing sent")


def send_objects(client: PacsClient, study_uid: str, objects: Sequence[tuple[str, Dataset]],
                 sources: Sequence[Dataset]) -> SendReport:
    """Store `objects` ((kind, dataset) pairs of one study) unless the PACS holds them already; first the study must
    hold each of `sources` (the source images' headers) under its PatientID (PacsQueryError otherwise; its kind
    PacsUnverifiedSource when either side names no PatientID)."""
    check_sources(client, study_uid, sources)
    named: dict[str, tuple[str, Dataset]] = {}
    for kind, dataset in objects:
        if str(dataset.get("StudyInstanceUID", "")) != study_uid:
            raise PacsQueryError(f"the {kind.replace('_', ' ')} to send is not in study {study_uid}: medviz sends "
                                 "results only into their source's study")
        named[str(dataset.SOPInstanceUID)] = (str(dataset.get("SeriesDescription", "")) or kind, dataset)
    held = client.stored_sop_uids(study_uid, named)
    fresh = [uid for uid in named if uid not in held]
    report = client.store(study_uid, [_part10(named[uid][1]) for uid in fresh]) if fresh else None
    stored = set(report.stored) if report else set()
    reasons = dict(report.failed) if report else {}
    failed = []
    for uid in fresh:
        if uid in reasons:
            failed.append((named[uid][0], _reason(reasons[uid])))
        elif uid not in stored:
            failed.append((named[uid][0], "not named as stored in the PACS's answer"))
    return SendReport(study_uid, tuple(named[uid][0] for uid in fresh if uid in stored and uid not in reasons),
                      tuple(named[uid][0] for uid in named if uid in held), tuple(failed))


def check_sources(client: PacsClient, study_uid: str, sources: Sequence[Dataset]) -> None:
    """PacsQueryError unless the PACS's study holds every source image, each under its header's PatientID; a
    PatientID absent or empty in the header or in the PACS's answer is PacsUnverifiedSource (two empty IDs, or a
    forged header's empty ID, prove nothing)."""
    if not sources:
        raise PacsQueryError(NO_SOURCE)
    for header in sources:
        if str(header.get("StudyInstanceUID", "")) != study_uid:
            raise PacsQueryError(f"a source image is not in study {study_uid}: nothing sent")
        claimed = str(header.get("PatientID", "") or "").strip()
        if not claimed:
            raise PacsUnverifiedSource(NO_HEADER_PATIENT)
        patient = client.source_patient(study_uid, str(header.get("SOPInstanceUID", "")))
        if patient is None:
            raise PacsQueryError(NOT_HELD)
        if not patient:
            raise PacsUnverifiedSource(NO_PACS_PATIENT)
        if patient != claimed:
            raise PacsQueryError(OTHER_PATIENT)


def _reason(code: int | None) -> str:
    if code is None:
        return "refused, no reason given"
    return f"{REASONS.get(code, 'refused')} (0x{code:04X})"


def _part10(dataset: Dataset) -> bytes:
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
