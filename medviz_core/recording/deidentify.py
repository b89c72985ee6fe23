"""De-identified recordings: DICOM headers through DICOM PS3.15 Annex E's Basic Application Level Confidentiality
Profile, and a recording copied without its patient's identity.

Owns: `Deidentifier` (one per recording: its random key maps each original UID to one new UID throughout
the recording, so objects exported from it still reference each other, and nobody without the key can
link a new UID back), the profile as `dicom-anonymizer` implements it (its rules, generated from the
standard's Table E.1-1, and its removal of private attributes) with medviz's three changes (UIDs keyed per
recording, not the library's process-wide table of random UIDs; dates and times emptied or removed, not
the library's dummy 00010101, which validators refuse; sequences removed for X, else cleaned item by item by the
same rules, never the library's own sequence actions), the attributes that say so
(PatientIdentityRemoved YES, DeidentificationMethod, DeidentificationMethodCodeSequence 113100),
`RecordingIdentity` (what one recording keeps: nothing by default, all of it for a clinical archive),
`is_deidentified` (medviz's own `deidentified` mark on a source frame, never a header's PatientIdentityRemoved) and
`holds_identity`, `check_burned_in` (header cleaning cannot remove text drawn into
the pixels), `identifying_results` (the recorded exports a replay of an identified recording leaves out)
and `deidentify_recording` (`medviz deidentify`: a copy with every frame, the burned-in refusal first, new random
session and recording ids, the source frame's headers de-identified and marked, the recorded `dicom` results
dropped). Does not own the frames' format (wire/), the
writer and reader (recording/file.py), exports (export/) nor who may see identity (server/).
docs/deidentification.md says why this library and what is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medviz_core.errors import ImageError, RequestError
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import SourceFrame, StartFrame

if TYPE_CHECKING:
    from medviz_core.recording.file import IndexEntry

PROFILE = "Basic Application Level Confidentiality Profile"  # DeidentificationMethod (LO: at most 64 characters)
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")  # PS3.16 CID 7050
RULES = "dicomfields_2026c"  # dicom-anonymizer's copy of Table E.1-1 (DICOM 2026c)
IDENTIFYING_KINDS = frozenset({"dicom"})  # analysis results that copy a header's identity (export zips)
BURNED_IN = "BurnedInAnnotation"
TEXT_VALUE = (0x0040, 0xA160)
"""Text Value of a content item (a kept Content Sequence's TEXT items): free text the profile's table does not list
(its Clean Descriptors option would clean it, which medviz does not offer), so medviz removes it."""

Action = Callable[[Any, tuple[int, ...]], None]


class BurnedInAnnotationError(ImageError):
    """A DICOM whose header says its pixels hold burned-in text (identity the header cleaning cannot reach)."""


class Deidentifier:
    """The profile for the headers of one recording: every header it cleans maps an original UID to the same new
    UID (`2.25.` and a UUID derived from the UID by HMAC-SHA256 under this recording's key)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._cleaned: dict[bytes, bytes] = {}  # header -> its de-identified bytes (a session's watchers ask often)

    def uid(self, original: str) -> str:
        """The new UID of `original` in this recording (PS3.5 B.2: a UUID under the root 2.25)."""
        digest = hmac.new(self._key, original.encode("ascii", "replace"), hashlib.sha256).digest()
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def dataset(self, dataset: Any) -> Any:
        """Clean a pydicom dataset in place by the profile and say so in it; returns it."""
        from dicomanonymizer.simpledicomanonymizer import anonymize_dataset
        from pydicom.dataset import Dataset

        rules = _rules(self._uid_action)
        anonymize_dataset(dataset, None, True, lambda: dict(rules))
        _clean_sequences(dataset, rules)
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = PROFILE
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
        dataset.DeidentificationMethodCodeSequence = [code]
        return dataset

    def header(self, header: bytes) -> bytes:
        """A source frame's header (DICOM bytes without pixel data), de-identified, as DICOM bytes."""
        import pydicom

        if header in self._cleaned:
            return self._cleaned[header]
        try:
            dataset = pydicom.dcmread(io.BytesIO(header), force=True)
        except Exception as error:  # any pydicom failure is a bad header
            raise ImageError("a recorded DICOM header could not be read to de-identify it") from error
        out = io.BytesIO()
        try:
            self.dataset(dataset).save_as(out, enforce_file_format=False)
        except Exception as error:  # a value the profile's actions or the writer cannot handle: never half-cleaned
            raise ImageError(f"a recorded DICOM header could not be de-identified ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from error
        self._cleaned[header] = out.getvalue()
        return self._cleaned[header]

    def headers(self, headers: Sequence[bytes | None]) -> tuple[bytes | None, ...]:
        return tuple(None if h is None else self.header(h) for h in headers)

    def _uid_action(self, dataset: Any, tag: tuple[int, ...]) -> None:
        element = dataset.get(tag)
        if element is not None and element.value:
            self._map(element)

    def _map(self, element: Any) -> None:
        if element.VM > 1:
            element.value = [self.uid(str(v)) for v in element.value]
        else:
            element.value = self.uid(str(element.value))


def _clean_sequences(dataset: Any, rules: dict[tuple[int, ...], Any]) -> None:
    """The same rules inside every sequence left after the top level (Annex E's K, and medviz's reading of D, Z and
    U for a sequence: "cleaned"), item by item, nested sequences too: UIDs mapped by the recording's key, class UIDs
    kept, dates removed or emptied. The library would empty or dummy a whole sequence (its own UID table, text
    ANONYMIZED, dates 00010101) and cleans only the top level."""
    from dicomanonymizer.simpledicomanonymizer import anonymize_dataset

    for element in list(dataset):
        if element.VR == "SQ" and element.value:
            for item in element.value:
                anonymize_dataset(item, None, True, lambda: dict(rules))
                _clean_sequences(item, rules)


def _vr(tag: tuple[int, ...]) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR((tag[0] << 16) | tag[1]))
    except KeyError:
        return ""


def _rules(uid_action: Action) -> dict[tuple[int, ...], Any]:
    """The library's rules with medviz's changes, UIDs by `uid_action`."""
    rules, uids = _fixed_rules()
    return {**rules, **{tag: uid_action for tag in uids}}


@cache
def _fixed_rules() -> tuple[dict[tuple[int, ...], Any], tuple[tuple[int, ...], ...]]:
    """The library's rules with dates and times removed where the profile says X first (X, X/Z, X/D, X/Z/D), else
    emptied (zero length), instead of its dummy 00010101; sequences removed for X, else left for `_clean_sequences`
    (never the library's replace or empty of a sequence); and the UI attributes it replaces (U, or D for a UI)."""
    from dicomanonymizer.simpledicomanonymizer import (
        delete,
        delete_or_empty,
        delete_or_empty_or_replace,
        delete_or_replace,
        initialize_actions,
    )

    removed = (delete, delete_or_empty, delete_or_replace, delete_or_empty_or_replace)
    rules: dict[tuple[int, ...], Any] = initialize_actions(RULES)
    uids = []
    for tag, action in rules.items():
        vr = _vr(tag) if len(tag) == 2 else ""
        if vr == "UI" and action is not delete:
            uids.append(tag)
        elif vr in ("DA", "DT", "TM"):
            rules[tag] = _remove if action in removed else _empty
        elif vr == "SQ":
            rules[tag] = _remove if action is delete else _clean_later
    rules[TEXT_VALUE] = _remove  # a content item's free text: not in the table, but it can name anyone
    return rules, tuple(uids)


def _clean_later(dataset: Any, tag: tuple[int, ...]) -> None:
    """A sequence the profile keeps in some form: its items are cleaned by the same rules (`_clean_sequences`)."""


def _remove(dataset: Any, tag: tuple[int, ...]) -> None:
    if tag in dataset:
        del dataset[tag]


def _empty(dataset: Any, tag: tuple[int, ...]) -> None:
    element = dataset.get(tag)
    if element is not None:
        element.value = ""


def is_deidentified(source: SourceFrame | None) -> bool:
    """Whether a recording's source frame is free of identity: none (no DICOM), no header in it, or medviz's own
    `deidentified` mark. Never a header's PatientIdentityRemoved: a partial anonymizer may set it and leave the name."""
    return source is None or source.deidentified or all(header is None for header in source.headers)


def burned_in(header: bytes) -> bool:
    """Whether a DICOM header says BurnedInAnnotation (0028,0301) YES."""
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(header), force=True, stop_before_pixels=True, specific_tags=[BURNED_IN])
    return str(dataset.get(BURNED_IN, "")).strip().upper() == "YES"


def check_burned_in(headers: Sequence[bytes | None], option: str) -> None:
    """BurnedInAnnotationError (one line naming the tag and `option`) if an image's header says its pixels hold
    burned-in annotation: a de-identified recording cannot clean text drawn into the image."""
    for number, header in enumerate(headers, start=1):
        if header is not None and burned_in(header):
            raise BurnedInAnnotationError(
                f"image {number} says BurnedInAnnotation (0028,0301) = YES: text drawn into its pixels may name the "
                f"patient, and de-identifying the header cannot remove it; pass {option} to record it anyway")


@dataclass(frozen=True)
class RecordingIdentity:
    """What one recording keeps of its patient's identity: by default nothing (its DICOM headers de-identified by
    `deidentifier`, the recording's key, and a DICOM that says it has burned-in annotation refused unless
    `allow_burned_in`); with `keep`, all of it (a clinical archive). `allow_with`: what the refusal says to pass."""

    keep: bool = False
    allow_burned_in: bool = False
    allow_with: str = "--allow-burned-in"
    deidentifier: Deidentifier = field(default_factory=Deidentifier)

    def check(self, headers: Sequence[bytes | None]) -> None:
        """BurnedInAnnotationError for an image with burned-in annotation, unless identity is kept or it is allowed."""
        if not self.keep and not self.allow_burned_in:
            check_burned_in(headers, self.allow_with)

    def recorded(self, headers: Sequence[bytes | None]) -> SourceFrame:
        """The source frame the recording gets: the headers as they came, or de-identified with medviz's mark."""
        if self.keep:
            return SourceFrame(tuple(headers))
        return SourceFrame(self.deidentifier.headers(headers), deidentified=True)


@dataclass(frozen=True)
class DeidentifiedCopy:
    """What `deidentify_recording` wrote: frames copied, headers de-identified, results dropped."""

    frames: int
    headers: int
    dropped: int


def deidentify_recording(source: Path, out: Path, allow_burned_in: bool = False) -> DeidentifiedCopy:
    """A teaching copy of recording `source` at `out` (a new file, never overwritten: RequestError if it exists):
    every whole frame copied in order, the start frame under a new random session id (and recording id: the
    original may be a file name such as MRN4711_Doe), the source frame's headers de-identified (one new key) with
    medviz's mark, and the recorded results of IDENTIFYING_KINDS dropped (they can be asked again of the copy); then
    its summary sidecar. BurnedInAnnotationError before anything is written if an original header says its pixels
    hold burned-in text, unless `allow_burned_in`. `source` is only read. NotFoundError if it is missing,
    ProtocolError if it does not begin with a start frame."""
    from medviz_core.recording.file import RecordingWriter, read_recording
    from medviz_core.recording.summary import summarize

    if out.exists() or out.is_symlink():
        raise RequestError(f"{str(out)!r} already exists; a de-identified copy never overwrites a file")
    recording = read_recording(source)
    if recording.start is None:
        raise RequestError(f"recording {source.stem!r} holds no whole frame; there is nothing to copy")
    if recording.source is not None and not allow_burned_in:
        check_burned_in(recording.source.headers, "--allow-burned-in")
    deidentifier = Deidentifier()
    frames = headers = dropped = 0
    try:
        with RecordingWriter(out) as writer:
            for recorded in recording.frames:
                frame = recorded.frame
                if isinstance(frame, AnalysisFrame) and frame.kind in IDENTIFYING_KINDS:
                    dropped += 1
                    continue
                if isinstance(frame, StartFrame):
                    session = secrets.token_urlsafe(16)
                    recording_id = None if frame.recording is None else session
                    writer.write(replace(frame, session=session, recording=recording_id).to_wire())
                elif isinstance(frame, SourceFrame):
                    writer.write(SourceFrame(deidentifier.headers(frame.headers), deidentified=True).to_wire())
                    headers += sum(h is not None for h in frame.headers)
                else:
                    writer.write(recorded.data)
                frames += 1
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    summarize(out)
    return DeidentifiedCopy(frames, headers, dropped)


def holds_identity(path: Path) -> bool:
    """Whether a recording's source frame holds a DICOM header not marked de-identified (read up to its first
    step: the source frame follows the start frame)."""
    from medviz_core.recording.file import iter_types
    from medviz_core.wire.server_frames import decode

    for data, kind in iter_types(path):
        if kind == "source":
            frame = decode(data)
            return isinstance(frame, SourceFrame) and not is_deidentified(frame)
        if kind == "step":
            break
    return False


def identifying_results(path: Path, index: Sequence[IndexEntry]) -> frozenset[int]:
    """The offsets of the recorded results a replay must not send: the IDENTIFYING_KINDS results of a recording whose
    source frame holds identity (none of a de-identified recording's, nor of one without DICOM)."""
    from medviz_core.recording.file import read_at
    from medviz_core.wire.server_frames import decode

    with open(path, "rb") as file:
        sources = [decode(read_at(file, e)) for e in index if e.type == "source"]
        if not sources or not isinstance(sources[0], SourceFrame) or is_deidentified(sources[0]):
            return frozenset()
        results = (e for e in index if e.type == "analysis")
        return frozenset(e.offset for e in results if _identifying(decode(read_at(file, e))))


def _identifying(frame: Any) -> bool:
    return isinstance(frame, AnalysisFrame) and frame.kind in IDENTIFYING_KINDS
