"""A DICOMweb client of one PACS: QIDO-RS searches, WADO-RS instances and rendered thumbnails, STOW-RS stores.

Owns: `PacsClient` (synchronous httpx; the server calls it through asyncio.to_thread) and the values it returns
(`StudyQuery`, `StudyMatch`, `StudyPage`, `SeriesMatch`, `InstanceMatch`, `StoreReport`). Every answer is untrusted:
it is streamed and dropped past its size limit, its items are counted, its values checked for type and length,
and its UIDs validated before any of them is put into a URL; every exchange has a connect timeout, a timeout per
read and a deadline for the whole (deadline.py: one connection per exchange, shut down when the deadline passes,
even while its headers trickle in); a redirect is never followed (httpx would read its body in full before any limit
applies): it is a bad answer, and a request for any other scheme, host or port than the PACS's is refused. Failures
are the typed PacsErrors of errors.py, one sentence each, never carrying a password or token. Does not own
choosing views (views.py), what is sent (send.py) nor the limits' defaults (config.py).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote

import httpx

from server.pacs import dicom_json as dj
from server.pacs import multipart
from server.pacs.config import PacsConfig, port_of
from server.pacs.deadline import Deadline
from server.pacs.errors import (
    REFUSED_CREDENTIALS,
    PacsBadAnswer,
    PacsError,
    PacsNotFound,
    PacsQueryError,
    PacsTimeout,
    PacsTooLarge,
    PacsUnauthorized,
    PacsUnreachable,
)

logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines name each URL: UIDs, a patient ID searched for
logging.getLogger("httpcore").setLevel(logging.WARNING)
Params = list[tuple[str, str | int | float | bool | None]]
DICOM_JSON = "application/dicom+json"
DICOM_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MAX_SERIES = 1000  # series one study may list
MAX_INSTANCES = 5000  # instances one study (or series) may list
MAX_THUMBNAIL_SIDE = 1024
MAX_QUERY_CHARS = 64
UIDS_PER_QUERY = 50  # SOP Instance UIDs one QIDO-RS list match asks for (a URL of about 3 KB)
DATE_RANGE = re.compile(r"(\d{8})?(-(\d{8})?)?")
QUERY_SAFE = "*?^,-._~:"  # sent as is in a query value; everything else percent-escaped
MODALITY = re.compile(r"[A-Z0-9]{1,16}")

STUDY_FIELDS = ("00080020", "00080050", "00080061", "00081030", "00100010", "00100020", "0020000D", "00201206",
                "00201208")
SERIES_FIELDS = ("0020000E", "00080060", "00200011", "0008103E", "00201209")
INSTANCE_FIELDS = ("0020000E", "00080016", "00080018", "00200013", "00185101", "00280008", "00280010", "00280011")


@dataclass(frozen=True)
class StudyQuery:
    """A QIDO-RS search; every field optional (None: not asked). Patient name may hold `*` and `?`."""

    patient_id: str | None = None
    patient_name: str | None = None
    accession: str | None = None
    study_date: str | None = None  # "YYYYMMDD" or "YYYYMMDD-YYYYMMDD" (either end may be open)
    modality: str | None = None  # e.g. CR, DX

    def params(self) -> list[tuple[str, str]]:
        """The query's parameters, each checked (PacsQueryError otherwise)."""
        out = []
        for name, value in (("PatientID", self.patient_id), ("PatientName", self.patient_name),
                            ("AccessionNumber", self.accession)):
            if value is None or not value.strip():
                continue
            value = value.strip()
            if len(value) > MAX_QUERY_CHARS or any(ord(c) < 32 or c in "\\" for c in value):
                raise PacsQueryError(f"the {name} to search for must be at most {MAX_QUERY_CHARS} characters "
                                     f"without control characters or backslashes; got {value[:80]!r}")
            out.append((name, value))
        if self.study_date is not None and self.study_date.strip():
            date = self.study_date.strip()
            if date == "-" or not DATE_RANGE.fullmatch(date):
                raise PacsQueryError(f"the study date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may "
                                     f"be left open); got {date[:40]!r}")
            out.append(("StudyDate", date))
        if self.modality is not None and self.modality.strip():
            modality = self.modality.strip().upper()
            if not MODALITY.fullmatch(modality):
                raise PacsQueryError(f"the modality must be a DICOM modality code such as CR or DX; "
                                     f"got {self.modality[:40]!r}")
            out.append(("ModalitiesInStudy", modality))
        return out


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    study_description: str
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None


@dataclass(frozen=True)
class StudyPage:
    studies: tuple[StudyMatch, ...]
    offset: int
    more: bool  # the PACS may hold more, and max_results leaves room for them
    capped: bool = False  # this page reached max_results: more may match than a search shows (narrow it)


@dataclass(frozen=True)
class SeriesMatch:
    series_uid: str
    modality: str
    series_number: int | None
    description: str
    instance_count: int | None


@dataclass(frozen=True)
class InstanceMatch:
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    instance_number: int | None
    view_position: str
    frames: int
    rows: int | None
    columns: int | None


@dataclass(frozen=True)
class StoreReport:
    """What a STOW-RS store did: the SOP Instance UIDs stored, and those refused with the PACS's reason code."""

    stored: tuple[str, ...]
    failed: tuple[tuple[str, int | None], ...]


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class PacsClient:
    """One PACS's DICOMweb client; a context manager (closes its connections)."""

    def __init__(self, config: PacsConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        auth: httpx.Auth | None = None
        if config.user is not None and config.password is not None:
            auth = httpx.BasicAuth(config.user, config.password)
        elif config.token is not None:
            auth = _BearerAuth(config.token)
        timeout = httpx.Timeout(connect=config.connect_timeout_s, read=config.read_timeout_s,
                                write=config.read_timeout_s, pool=config.connect_timeout_s)
        self._http = httpx.Client(auth=auth, timeout=timeout, follow_redirects=False, transport=transport,
                                  event_hooks={"request": [self._same_origin]}, trust_env=False,
                                  headers={"Accept-Encoding": "gzip, deflate"},
                                  limits=httpx.Limits(max_keepalive_connections=0))  # each exchange's socket seen

    def __repr__(self) -> str:
        return f"PacsClient({self.config.root!r})"

    def __enter__(self) -> PacsClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- QIDO-RS --------------------------------------------------------------------------------------------

    def find_studies(self, query: StudyQuery, offset: int = 0) -> StudyPage:
        """One page of the studies matching `query`, from `offset`; never past `max_results` in all."""
        params = query.params()
        if offset < 0:
            raise PacsQueryError(f"the offset of a study search must be >= 0; got {offset}")
        limit = min(self.config.page_size, self.config.max_results - offset)
        if limit <= 0:
            return StudyPage((), offset, False)
        what = "a study search"
        params += [("limit", str(limit)), ("offset", str(offset)), *(("includefield", f) for f in STUDY_FIELDS)]
        body = self._get(f"/studies?{_query(params)}", what, DICOM_JSON, self.config.max_answer_bytes)
        found = dj.items(body, what, max(limit, self.config.page_size))[:limit]
        studies = tuple(_study(item, what) for item in found)
        full = len(found) >= limit
        more = full and offset + len(found) < self.config.max_results
        return StudyPage(studies, offset, more, capped=full and offset + len(found) >= self.config.max_results)

    def series(self, study_uid: str) -> tuple[SeriesMatch, ...]:
        """The series of a study (PacsNotFound when the PACS holds none of it)."""
        study = dj.check_uid(study_uid, "the study UID")
        what = f"the series of study {study}"
        body = self._get(f"/studies/{study}/series", what, DICOM_JSON, self.config.max_answer_bytes,
                         params=[("includefield", f) for f in SERIES_FIELDS], missing=f"study {study}")
        found = dj.items(body, what, MAX_SERIES)
        if not found:
            raise PacsNotFound(f"the PACS at {self.config.root} holds no study {study}")
        matches = [SeriesMatch(dj.uid(i, "0020000E", what), dj.text(i, "00080060", what, 16),
                               dj.number(i, "00200011", what), dj.text(i, "0008103E", what, 64),
                               dj.number(i, "00201209", what)) for i in found]
        return tuple(sorted(matches, key=lambda s: (s.series_number is None, s.series_number or 0)))

    def instances(self, study_uid: str, series_uid: str | None = None) -> tuple[InstanceMatch, ...]:
        """The instances of a study, or of one of its series, in series then instance number order."""
        study = dj.check_uid(study_uid, "the study UID")
        path = f"/studies/{study}"
        what = f"the instances of study {study}"
        if series_uid is not None:
            series = dj.check_uid(series_uid, "the series UID")
            path += f"/series/{series}"
            what = f"the instances of series {series} of study {study}"
        body = self._get(f"{path}/instances", what, DICOM_JSON, self.config.max_answer_bytes,
                         params=[("includefield", f) for f in INSTANCE_FIELDS], missing=what)
        found = dj.items(body, what, MAX_INSTANCES)
        if not found:
            raise PacsNotFound(f"the PACS at {self.config.root} holds no {what.removeprefix('the ')}")
        matches = [_instance(i, what, series_uid) for i in found]
        return tuple(sorted(matches, key=lambda m: (m.instance_number is None, m.instance_number or 0)))

    def stored_sop_uids(self, study_uid: str, sop_uids: Iterable[str]) -> frozenset[str]:
        """Which of `sop_uids` the PACS already holds in the study (none when it holds no such study). Asks for those
        UIDs alone (QIDO-RS list matching, UIDS_PER_QUERY at a time), never for the whole study: a study past
        MAX_INSTANCES, or a PACS that caps its answers, would otherwise hide one already stored."""
        study = dj.check_uid(study_uid, "the study UID")
        wanted = sorted({dj.check_uid(uid, "a SOP instance UID") for uid in sop_uids})
        what = f"the instances of study {study}"
        held: set[str] = set()
        for start in range(0, len(wanted), UIDS_PER_QUERY):
            found = self._matching(study, wanted[start:start + UIDS_PER_QUERY], "00080018", what)
            if found is None:
                return frozenset()
            held |= {dj.uid(i, "00080018", what) for i in found}
        return frozenset(held & set(wanted))

    def source_patient(self, study_uid: str, sop_uid: str) -> str | None:
        """The PatientID under which the PACS's study holds SOP instance `sop_uid`: "" when its answer names none
        (absent or empty; send.py refuses to verify against it), None when it does not hold the instance."""
        study = dj.check_uid(study_uid, "the study UID")
        sop = dj.check_uid(sop_uid, "the SOP instance UID")
        what = f"instance {sop} of study {study}"
        found = [i for i in self._matching(study, [sop], "00100020", what) or [] if dj.uid(i, "00080018", what) == sop]
        return dj.text(found[0], "00100020", what, 64) if found else None

    def _matching(self, study: str, sop_uids: Sequence[str], field: str, what: str) -> list[dj.Dataset] | None:
        """The study's instances among `sop_uids` (checked UIDs; QIDO-RS list matching), each with `field`, at most
        one item per UID asked; None when the PACS holds no such study."""
        query = _query([("SOPInstanceUID", ",".join(sop_uids)), ("includefield", field)])
        try:
            body = self._get(f"/studies/{study}/instances?{query}", what, DICOM_JSON, self.config.max_answer_bytes,
                             missing=what)
        except PacsNotFound:
            return None
        return dj.items(body, what, len(sop_uids))

    # -- WADO-RS --------------------------------------------------------------------------------------------

    def thumbnail(self, study_uid: str, series_uid: str, sop_uid: str, size: int = 128) -> bytes:
        """The PACS's rendering of an instance (JPEG or PNG, at most `size` pixels a side asked), checked as an
        image of bounded size before it is handed on."""
        path, what = self._instance_path(study_uid, series_uid, sop_uid, "a thumbnail of instance")
        if not 16 <= size <= MAX_THUMBNAIL_SIDE:
            raise PacsQueryError(f"a thumbnail's size must be 16 to {MAX_THUMBNAIL_SIDE} pixels; got {size}")
        body, kind = self._get_typed(f"{path}/rendered?viewport={size},{size}", what, "image/jpeg",
                                     self.config.max_thumbnail_bytes, missing=what)  # a comma as is: Orthanc
        _check_picture(body, what)
        return body

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One instance as a DICOM Part 10 file (WADO-RS, multipart/related application/dicom)."""
        path, what = self._instance_path(study_uid, series_uid, sop_uid, "instance")
        body, kind = self._get_typed(path, what, DICOM_MULTIPART, self.config.max_instance_bytes + 64 * 1024,
                                     missing=what)
        found = multipart.parts(body, kind, what)
        dicoms = [content for part_type, content in found if part_type in ("application/dicom", "")]
        if len(found) != 1 or len(dicoms) != 1:
            raise PacsBadAnswer(f"the PACS's answer to {what} holds {len(found)} parts; medviz expects one DICOM file")
        data = dicoms[0]
        if len(data) > self.config.max_instance_bytes:
            raise PacsTooLarge(f"{what} is {len(data)} bytes, over the limit of {self.config.max_instance_bytes} "
                               "bytes per image (max_instance_bytes)")
        _check_part10(data, study_uid, sop_uid, what)
        return data

    # -- STOW-RS --------------------------------------------------------------------------------------------

    def store(self, study_uid: str, instances: Sequence[bytes]) -> StoreReport:
        """Store Part 10 files into a study; the PACS's report of what it stored and refused (StoreReport).
        A whole refusal with no report (4xx/5xx without a FailedSOPSequence) is a PacsError."""
        study = dj.check_uid(study_uid, "the study UID")
        what = f"storing {len(instances)} objects into study {study}"
        body, content_type = multipart.build(instances)
        status, answer = self._post(f"/studies/{study}", what, body, content_type)
        report = dj.dataset(answer, what) if answer.strip() else {}
        stored = tuple(dj.uid(i, "00081155", what) for i in dj.sequence(report, "00081199", what, len(instances)))
        failed = tuple((dj.uid(i, "00081155", what), dj.number(i, "00081197", what))
                       for i in dj.sequence(report, "00081198", what, len(instances)))
        if status >= 400 and not failed:
            raise PacsBadAnswer(f"the PACS at {self.config.root} refused {what} (HTTP {status}) without saying "
                                "which objects or why")
        if status < 400 and not stored and not failed and instances:
            raise PacsBadAnswer(f"the PACS's answer to {what} names no stored and no refused object")
        return StoreReport(stored, failed)

    # -- the exchanges ------------------------------------------------------------------------------------

    def _instance_path(self, study_uid: str, series_uid: str, sop_uid: str, noun: str) -> tuple[str, str]:
        study = dj.check_uid(study_uid, "the study UID")
        series = dj.check_uid(series_uid, "the series UID")
        sop = dj.check_uid(sop_uid, "the SOP instance UID")
        return f"/studies/{study}/series/{series}/instances/{sop}", f"{noun} {sop} of study {study}"

    def _same_origin(self, request: httpx.Request) -> None:
        url = request.url
        if (url.scheme, url.host.lower(), port_of(url.scheme, url.port)) != self.config.origin:
            raise PacsBadAnswer(f"medviz sends requests only to the PACS at {self.config.root}, not to "
                                f"{url.scheme}://{url.host}")

    def _get(self, path: str, what: str, accept: str, limit: int, params: Params | None = None,
             missing: str | None = None) -> bytes:
        return self._get_typed(path, what, accept, limit, params, missing)[0]

    def _get_typed(self, path: str, what: str, accept: str, limit: int, params: Params | None = None,
                   missing: str | None = None) -> tuple[bytes, str]:
        request = self._http.build_request("GET", self.config.root + path, params=params, headers={"Accept": accept})
        status, body, kind = self._exchange(request, what, limit, missing)
        if status == 204:
            return b"", kind
        return body, kind

    def _post(self, path: str, what: str, content: bytes, content_type: str) -> tuple[int, bytes]:
        request = self._http.build_request("POST", self.config.root + path, content=content,
                                           headers={"Content-Type": content_type, "Accept": DICOM_JSON})
        status, body, _ = self._exchange(request, what, self.config.max_store_answer_bytes, None, refusals=True)
        return status, body

    def _exchange(self, request: httpx.Request, what: str, limit: int, missing: str | None,
                  refusals: bool = False) -> tuple[int, bytes, str]:
        """Send `request`; (status, body up to `limit`, Content-Type). Errors become PacsErrors; the whole
        exchange, headers included, ends at total_timeout_s (Deadline)."""
        root = self.config.root
        late = PacsTimeout(f"the PACS at {root} took longer than {self.config.total_timeout_s:g} s for {what} "
                           "(total_timeout_s)")
        with Deadline(self.config.total_timeout_s) as deadline:
            request.extensions["trace"] = deadline.trace
            try:
                response = self._http.send(request, stream=True)
                try:
                    status = response.status_code
                    self._check_status(status, what, missing, refusals)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise _too_large(root, what, limit)
                    chunks, size = [], 0
                    for chunk in response.iter_raw():
                        size += len(chunk)
                        if size > limit:
                            raise _too_large(root, what, limit)
                        chunks.append(chunk)
                    if deadline.fired:  # a body without a length ends where the deadline shut it
                        raise late
                    body = _decoded(b"".join(chunks), response.headers.get("content-encoding", ""), limit, root,
                                    what)
                    return status, body, response.headers.get("content-type", "")
                finally:
                    deadline.finish()
                    response.close()
            except PacsError:
                raise
            except httpx.HTTPError as error:
                if deadline.fired:
                    raise late from None
                raise _failure(error, root, what, self.config) from None

    def _check_status(self, status: int, what: str, missing: str | None, refusals: bool) -> None:
        root = self.config.root
        if status in (401, 403):
            raise PacsUnauthorized(f"{REFUSED_CREDENTIALS} (HTTP {status} from {root} for "
                                   f"{what})")
        if status == 404 and missing is not None:
            raise PacsNotFound(f"the PACS at {root} holds no {missing.removeprefix('the ')} (HTTP 404)")
        if status >= 400 and not (refusals and status in (400, 409, 415, 500)):
            raise PacsBadAnswer(f"the PACS at {root} answered HTTP {status} to {what}")
        if 300 <= status < 400:
            raise PacsBadAnswer(f"the PACS at {root} answered {what} with a redirect (HTTP {status}), which "
                                "medviz does not follow: give the PACS's address as it answers")


def _failure(error: httpx.HTTPError, root: str, what: str, config: PacsConfig) -> PacsError:
    if isinstance(error, httpx.TimeoutException):
        return PacsTimeout(_timeout_message(error, root, what, config))
    if isinstance(error, (httpx.ConnectError, httpx.NetworkError)):
        return PacsUnreachable(f"the PACS at {root} cannot be reached for {what}: {_cause(error)}")
    return PacsBadAnswer(f"the PACS at {root} broke off {what}: {type(error).__name__}")


def _query(params: list[tuple[str, str]]) -> str:
    """A query string that keeps DICOM's matching characters (`*`, `?`, `^`, `,`) as they are: Orthanc 1.10
    matches the raw query text and does not undo a percent-escape (`%2A` is not `*` there)."""
    return "&".join(f"{name}={quote(value, safe=QUERY_SAFE)}" for name, value in params)


def _decoded(body: bytes, encoding: str, limit: int, root: str, what: str) -> bytes:
    """A body's gzip/deflate undone, never past `limit` (a compression bomb stops there)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    import zlib

    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise PacsBadAnswer(f"the PACS at {root} answered {what} in an encoding medviz does not read ({encoding})")
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32 if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error:
        raise PacsBadAnswer(f"the PACS's answer to {what} is not valid {encoding}") from None
    if len(out) > limit:
        raise _too_large(root, what, limit)
    if not decoder.eof:  # cut short: what was read is not the whole answer
        raise PacsBadAnswer(f"the PACS's answer to {what} is not valid {encoding}")
    return out


def _too_large(root: str, what: str, limit: int) -> PacsTooLarge:
    return PacsTooLarge(f"the PACS at {root} answered {what} with more than {limit} bytes; medviz stopped reading "
                        "there and used none of it")


def _timeout_message(error: httpx.TimeoutException, root: str, what: str, config: PacsConfig) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return f"the PACS at {root} did not accept a connection within {config.connect_timeout_s:g} s for {what}"
    return f"the PACS at {root} did not answer {what} within {config.read_timeout_s:g} s (read_timeout_s)"


def _cause(error: Exception) -> str:
    text = str(error).lower()
    if "refused" in text:
        return "connection refused (is it running, and is the port right?)"
    if "name or service" in text or "nodename" in text or "resolution" in text:
        return "its host name is unknown"
    if "ssl" in text or "certificate" in text:
        return "its TLS certificate was refused"
    return type(error).__name__


def _study(item: dj.Dataset, what: str) -> StudyMatch:
    return StudyMatch(
        study_uid=dj.uid(item, "0020000D", what), patient_id=dj.text(item, "00100020", what, 64),
        patient_name=dj.person(item, "00100010", what), accession=dj.text(item, "00080050", what, 16),
        study_date=dj.text(item, "00080020", what, 8), study_description=dj.text(item, "00081030", what, 64),
        modalities=dj.texts(item, "00080061", what), series_count=dj.number(item, "00201206", what),
        instance_count=dj.number(item, "00201208", what))


def _instance(item: dj.Dataset, what: str, series_uid: str | None) -> InstanceMatch:
    series = dj.uid(item, "0020000E", what) if series_uid is None or "0020000E" in item else series_uid
    frames = dj.number(item, "00280008", what)
    return InstanceMatch(series_uid=series, sop_uid=dj.uid(item, "00080018", what),
                         sop_class_uid=dj.uid(item, "00080016", what),
                         instance_number=dj.number(item, "00200013", what),
                         view_position=dj.text(item, "00185101", what, 16), frames=1 if frames is None else frames,
                         rows=dj.number(item, "00280010", what), columns=dj.number(item, "00280011", what))


def _check_picture(body: bytes, what: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as picture:
            kind, size = picture.format, picture.size
            picture.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise PacsBadAnswer(f"the PACS's answer to {what} is not a JPEG or PNG image") from None
    if kind not in ("JPEG", "PNG"):
        raise PacsBadAnswer(f"the PACS's answer to {what} is {kind}, not a JPEG or PNG image")
    if max(size) > 4 * MAX_THUMBNAIL_SIDE:
        raise PacsBadAnswer(f"the PACS's answer to {what} is {size[0]}x{size[1]} pixels, not a thumbnail")


def _check_part10(data: bytes, study_uid: str, sop_uid: str, what: str) -> None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if data[128:132] != b"DICM":
        raise PacsBadAnswer(f"the PACS's answer to {what} is not a DICOM Part 10 file")
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        found = str(header.get("SOPInstanceUID", ""))
        study = str(header.get("StudyInstanceUID", ""))
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
        raise PacsBadAnswer(f"the PACS's answer to {what} is a DICOM file medviz cannot read") from None
    if found != sop_uid:
        raise PacsBadAnswer(f"the PACS answered {what} with another instance ({found[:64]})")
    if study != study_uid:
        raise PacsBadAnswer(f"the PACS answered {what} with an instance of another study ({study[:64]})")

