"""Send to PACS of a pinned token: its DICOM objects, built from the identified headers, stored into the source study.

Owns: which sources may be sent: only one the server itself retrieved from its PACS (the source frame's `from_pacs`
mark, AnalysisSource.from_pacs; an upload, even a DICOM naming a real study's UIDs and patient around other pixels,
is refused with NOT_FROM_PACS before any PACS exchange), a replay's recording only where it also holds identity and
the server keeps identity (`recording_for_send`; a live session's owner's view is sessions.live_source(owner=True),
proved by the owner key in server/pacs_routes.py); `send_token` (per image with a DICOM header:
analyses/compute.export_token_map with that header, export/dicom.build_export, then send.send_objects into the
header's StudyInstanceUID; blocking, for a worker thread) and `SendAnswer`, what the browser gets: one line of its
own (the report's names the study's UID) and each object's series description and status, never a UID or patient
data. Does not own building the objects (medviz_core/export/), STOW-RS (client.py, send.py), the HTTP route
(server/pacs_routes.py) or `medviz export --send` (an operator's CLI: send.py's source check only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from medviz_core.analyses.compute import AnalysisSource, export_token_map, has_dicom, recording_source
from medviz_core.errors import RequestError
from medviz_core.export.dicom import build_export
from medviz_core.recording.deidentify import is_deidentified
from medviz_core.recording.file import read_recording, recording_path
from server.pacs.client import PacsClient
from server.pacs.config import PacsConfig
from server.pacs.send import SendReport, send_objects

NO_DICOM = ("this {what}'s images are PNG or JPEG: they belong to no study in the PACS, so there is nothing to send "
            "into (start from DICOM files or from the PACS)")
DEIDENTIFIED = ("this recording is de-identified: its objects would name no patient and belong to no study in the "
                "PACS; send from the live session instead")
NOT_FROM_PACS = "only a study opened from the PACS can be sent back to it (this session's images were uploaded)"
NO_IDENTITY_KEPT = ("this server keeps no identity in replays (recordings_keep_identity is off): send from the live "
                    "session instead")


@dataclass(frozen=True)
class SendAnswer:
    """What a Send to PACS answers: one line, then each object's series description and status."""

    message: str
    objects: tuple[tuple[str, str], ...]  # (series description, "sent" | "already" | "failed: reason")

    def to_json(self) -> dict[str, object]:
        return {"message": self.message,
                "objects": [{"series": series, "status": status} for series, status in self.objects]}

    @property
    def refused(self) -> int:
        return sum(status.startswith("failed") for _, status in self.objects)

    @staticmethod
    def of(reports: list[SendReport]) -> SendAnswer:
        objects: list[tuple[str, str]] = []
        for report in reports:
            objects += [(series, "sent") for series in report.sent] + [(series, "already") for series in report.already]
            objects += [(series, f"failed: {reason or 'refused'}") for series, reason in report.failed]
        return SendAnswer(_line(objects), tuple(objects))


def _line(objects: list[tuple[str, str]]) -> str:
    """The send in one line a user reads: no UID, no patient data (the report's own line names the study's UID)."""
    sent = sum(status == "sent" for _, status in objects)
    already = sum(status == "already" for _, status in objects)
    failed = [f"{series}: {status.partition(': ')[2]}" for series, status in objects if status.startswith("failed")]
    if not objects:
        return "nothing to send"
    if sent == 0 and not failed:
        return "already sent (same token and method): nothing new stored"
    parts = [f"sent {sent} object{'' if sent == 1 else 's'} into the study"] if sent else []
    if already:
        parts.append(f"{already} {'was' if already == 1 else 'were'} already there")
    if failed:
        parts.append(f"{len(failed)} of {len(objects)} objects were refused: {'; '.join(failed)}")
    return "; ".join(parts)


def recording_for_send(recordings: Path, recording_id: str, keep_identity: bool) -> AnalysisSource:
    """A recording's source with its identified headers, or RequestError saying why it may not be sent (blocking)."""
    path = recording_path(recordings, recording_id)
    recording = read_recording(path)
    source = recording.source
    if source is None or all(header is None for header in source.headers):
        raise RequestError(NO_DICOM.format(what="recording"))
    if is_deidentified(source):
        raise RequestError(DEIDENTIFIED)
    if not source.from_pacs:
        raise RequestError(NOT_FROM_PACS)
    if not keep_identity:
        raise RequestError(NO_IDENTITY_KEPT)
    return recording_source(recording_id, path, recording)


def send_token(config: PacsConfig, source: AnalysisSource, index: int, method: str) -> SendAnswer:
    """Build token `index`'s objects (`method`'s map) for each image with a DICOM header and store them into its
    study; RequestError for a source the server did not retrieve from its PACS, ExportError for a token or method
    the source lacks, PacsError for the PACS's refusals (blocking)."""
    if not has_dicom(source):
        raise RequestError(NO_DICOM.format(what=source.what))
    if not source.from_pacs:
        raise RequestError(NOT_FROM_PACS)
    studies: dict[str, list[tuple[str, Dataset]]] = {}
    sources: dict[str, list[Dataset]] = {}  # each study's source headers: send_objects checks the PACS holds them
    for image, header in enumerate(source.headers):
        if header is None or image >= len(source.start.images):
            continue
        export_source, token_map = export_token_map(source, index, index, method, image)
        built = build_export(export_source, token_map)
        study = str(export_source.header.StudyInstanceUID)
        studies.setdefault(study, []).extend((o.kind, o.dataset) for o in built.objects)
        sources.setdefault(study, []).append(export_source.header)
    with PacsClient(config) as client:
        return SendAnswer.of([send_objects(client, study, objects, sources[study])
                              for study, objects in studies.items()])
