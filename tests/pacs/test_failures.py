"""Each way a PACS fails is one clear sentence: stopped (a closed port), slow (a loopback server that sleeps past
the read timeout), oversized answers, redirects elsewhere, a partial STOW-RS refusal, a study with only non-image
objects or only multi-frame images, an instance over the size limit. The misbehaving servers listen on 127.0.0.1
only and are stopped after each test."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pydicom
import pytest
from pydicom.uid import generate_uid

from server.pacs import multipart
from server.pacs.client import PacsClient, StudyQuery
from server.pacs.config import PacsConfig
from server.pacs.errors import (
    PacsBadAnswer,
    PacsNoImages,
    PacsStorePartial,
    PacsTimeout,
    PacsTooLarge,
    PacsUnauthorized,
    PacsUnreachable,
    PacsUnverifiedSource,
)
from server.pacs.send import NO_PACS_PATIENT, send_objects
from server.pacs.views import open_study
from tests.orthanc import Orthanc
from tests.pacs.fixtures import PacsStudy, dicom_copy
from tests.server.serve_process import free_port

Answer = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def loopback() -> Iterator[Callable[[Answer], str]]:
    """loopback(answer) -> the DICOMweb root of a server on 127.0.0.1 that answers every request with `answer`."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with contextlib.suppress(ConnectionError):  # medviz hung up, as it does past a limit
                    answer(self)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with contextlib.suppress(ConnectionError):
                    answer(self)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/dicom-web"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def reply(status: int, body: bytes, kind: str = "application/dicom+json", headers: dict[str, str] | None = None
          ) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def test_a_stopped_pacs_is_unreachable_in_one_sentence() -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    with PacsClient(PacsConfig(url)) as client, pytest.raises(PacsUnreachable) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == (f"the PACS at {url} cannot be reached for a study search: connection refused "
                                   "(is it running, and is the port right?)")


def test_a_slow_pacs_times_out_after_the_read_timeout(loopback: Callable[[Answer], str]) -> None:
    def slow(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(2)
        reply(200, b"[]")(handler)

    url = loopback(slow)
    began = time.monotonic()
    with PacsClient(PacsConfig(url, read_timeout_s=0.3)) as client, pytest.raises(PacsTimeout) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert time.monotonic() - began < 1.5
    assert error.value.message == f"the PACS at {url} did not answer a study search within 0.3 s (read_timeout_s)"


def test_a_pacs_that_trickles_its_answer_stops_at_the_total_timeout(loopback: Callable[[Answer], str]) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.end_headers()
        for _ in range(40):
            handler.wfile.write(b" " * 10)
            handler.wfile.flush()
            time.sleep(0.05)

    url = loopback(trickle)
    with PacsClient(PacsConfig(url, total_timeout_s=0.5)) as client, pytest.raises(PacsTimeout) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == f"the PACS at {url} took longer than 0.5 s for a study search (total_timeout_s)"


def test_a_pacs_that_trickles_its_headers_stops_at_the_total_timeout(loopback: Callable[[Answer], str]) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> None:  # each header line well within the read timeout
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(100):
            handler.wfile.write(b"X-Slow-%d: 1\r\n" % n)
            handler.wfile.flush()
            time.sleep(0.2)

    url = loopback(trickle)
    began = time.monotonic()
    with PacsClient(PacsConfig(url, read_timeout_s=3, total_timeout_s=2)) as client, \
            pytest.raises(PacsTimeout) as error:  # a read timeout past the deadline: a stall on a busy machine
        client.find_studies(StudyQuery(patient_id="X"))  # is no read timeout, only the deadline ends it
    assert 2 <= time.monotonic() - began < 6
    assert error.value.message == f"the PACS at {url} took longer than 2 s for a study search (total_timeout_s)"


def test_an_oversized_answer_is_dropped_at_the_limit(loopback: Callable[[Answer], str]) -> None:
    def endless(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length: the size shows only while reading
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.end_headers()
        for _ in range(64):
            handler.wfile.write(b" " * 65536)

    url = loopback(endless)
    with PacsClient(PacsConfig(url, max_answer_bytes=100_000)) as client, pytest.raises(PacsTooLarge) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == (f"the PACS at {url} answered a study search with more than 100000 bytes; "
                                   "medviz stopped reading there and used none of it")


def test_too_many_studies_in_one_answer_are_refused(loopback: Callable[[Answer], str]) -> None:
    study = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}
    url = loopback(reply(200, json.dumps([study] * 30).encode()))
    with PacsClient(PacsConfig(url, page_size=10)) as client, pytest.raises(PacsTooLarge) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == "the PACS answered a study search with 30 items; medviz reads at most 10"


def test_a_uid_with_a_path_in_an_answer_is_refused_before_it_is_used(loopback: Callable[[Answer], str]) -> None:
    study = {"0020000D": {"vr": "UI", "Value": ["1.2/../../admin"]}}
    url = loopback(reply(200, json.dumps([study]).encode()))
    with PacsClient(PacsConfig(url)) as client, pytest.raises(PacsBadAnswer) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == ("the PACS's answer to a study search: attribute 0020000D is not a valid DICOM "
                                   "UID")


def test_a_redirect_to_another_host_is_not_followed(loopback: Callable[[Answer], str]) -> None:
    url = loopback(reply(302, b"", headers={"Location": "http://localhost.example:1/steal"}))
    with PacsClient(PacsConfig(url, user="u", password="secret-password")) as client:
        with pytest.raises(PacsBadAnswer) as error:
            client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == (f"the PACS at {url} answered a study search with a redirect (HTTP 302), which "
                                   "medviz does not follow: give the PACS's address as it answers")
    assert "secret-password" not in repr(error.value.args)


def test_a_redirect_with_a_60_mb_body_is_refused_without_reading_its_body(loopback: Callable[[Answer], str]) -> None:
    sent: list[int] = []
    over = threading.Event()

    def redirect(handler: BaseHTTPRequestHandler) -> None:  # to itself, as a same-origin 302 may
        handler.send_response(302)
        handler.send_header("Location", handler.path)
        handler.send_header("Content-Length", str(60 * 2**20))
        handler.end_headers()
        count = 0
        try:
            for _ in range(60):
                handler.wfile.write(bytes(2**20))
                count += 2**20
        except OSError:
            pass
        finally:
            sent.append(count)
            over.set()

    url = loopback(redirect)
    with PacsClient(PacsConfig(url, max_answer_bytes=100_000)) as client, pytest.raises(PacsBadAnswer) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert over.wait(10)
    assert error.value.message == (f"the PACS at {url} answered a study search with a redirect (HTTP 302), which "
                                   "medviz does not follow: give the PACS's address as it answers")
    assert sent[0] < 20 * 2**20  # what the sockets' buffers took: the client read none of it


def test_a_gzip_bomb_is_refused_at_the_limit_without_being_inflated(loopback: Callable[[Answer], str]) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)  # gzip
    bomb = b"".join(packer.compress(bytes(2**20)) for _ in range(100)) + packer.flush()  # 100 MB inflated
    url = loopback(reply(200, bomb, headers={"Content-Encoding": "gzip"}))
    with PacsClient(PacsConfig(url, max_answer_bytes=1_000_000)) as client, pytest.raises(PacsTooLarge):
        client.find_studies(StudyQuery(patient_id="X"))  # once untraced: the lazy imports' memory is not counted
    tracemalloc.start()
    try:
        with PacsClient(PacsConfig(url, max_answer_bytes=1_000_000)) as client, \
                pytest.raises(PacsTooLarge) as error:
            client.find_studies(StudyQuery(patient_id="X"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(bomb) < 110_000
    assert error.value.message == (f"the PACS at {url} answered a study search with more than 1000000 bytes; "
                                   "medviz stopped reading there and used none of it")
    assert peak < 8 * 2**20  # the limit's worth inflated, not 100 MB


def test_a_stow_partial_failure_names_each_refused_object_and_its_reason(
        loopback: Callable[[Answer], str], sample_dicom: bytes) -> None:
    study = generate_uid()
    objects = [("secondary_capture", _dataset(sample_dicom, study, "medviz overlay")),
               ("segmentation", _dataset(sample_dicom, study, "medviz regions: token 0 'a: b'"))]
    answer = {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [objects[0][1].SOPInstanceUID]}}]},
              "00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [objects[1][1].SOPInstanceUID]},
                                                  "00081197": {"vr": "US", "Value": [0xA700]}}]}}
    source = _dataset(sample_dicom, study, "the source image")
    held = [{"00080018": {"vr": "UI", "Value": [source.SOPInstanceUID]}, "00100020": {"vr": "LO", "Value": ["P"]}}]

    def pacs(handler: BaseHTTPRequestHandler) -> None:  # holds the source image; stores one object, refuses one
        if handler.command == "POST":
            reply(202, json.dumps(answer).encode())(handler)
        else:
            reply(200, json.dumps(held if "00100020" in handler.path else []).encode())(handler)

    url = loopback(pacs)
    with PacsClient(PacsConfig(url)) as client:
        report = send_objects(client, study, objects, [source])
    assert (report.sent, report.already, report.failed) == (
        ("medviz overlay",), (), (("medviz regions: token 0 'a: b'", "out of resources (0xA700)"),))
    with pytest.raises(PacsStorePartial) as error:
        report.raise_for_failures()
    assert error.value.message == (f"the PACS did not store everything: stored 1 of 2 objects into study {study}; "
                                   "1 of 2 objects were refused: medviz regions: token 0 'a: b': out of resources (0xA700)")


def test_a_source_the_pacs_names_without_a_patient_id_cannot_be_verified_and_nothing_is_sent(
        loopback: Callable[[Answer], str], sample_dicom: bytes) -> None:
    study = generate_uid()
    source = _dataset(sample_dicom, study, "the source image")  # an honest header: PatientID P
    held = [{"00080018": {"vr": "UI", "Value": [source.SOPInstanceUID]}}]  # the PACS's answer names no PatientID
    posts: list[str] = []

    def pacs(handler: BaseHTTPRequestHandler) -> None:
        if handler.command == "POST":
            posts.append(handler.path)
        reply(200, json.dumps(held).encode())(handler)

    url = loopback(pacs)
    with PacsClient(PacsConfig(url)) as client, pytest.raises(PacsUnverifiedSource) as error:
        send_objects(client, study, [("secondary_capture", _dataset(sample_dicom, study, "medviz overlay"))],
                     [source])
    assert error.value.message == NO_PACS_PATIENT
    assert error.value.message == ("cannot verify the source's patient: the PACS's study holds the source image "
                                   "without a PatientID: nothing sent")
    assert posts == []


def test_a_pacs_that_caps_its_answers_still_shows_which_objects_it_holds(loopback: Callable[[Answer], str]) -> None:
    held = [f"1.2.3.{n}" for n in range(6000)]  # past MAX_INSTANCES; unfiltered answers capped at 100 items
    asked: list[str] = []

    def capping(handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        asked.append(urlsplit(handler.path).query)
        wanted = query["SOPInstanceUID"][0].split(",") if "SOPInstanceUID" in query else held[:100]
        found = [{"00080018": {"vr": "UI", "Value": [uid]}} for uid in wanted if uid in held]
        reply(200, json.dumps(found).encode())(handler)

    url = loopback(capping)
    with PacsClient(PacsConfig(url)) as client:
        found = client.stored_sop_uids("1.2.3", ["1.2.3.5999", "1.2.3.7", "1.2.9"])
    assert found == frozenset({"1.2.3.5999", "1.2.3.7"})
    assert asked == ["SOPInstanceUID=1.2.3.5999,1.2.3.7,1.2.9&includefield=00080018"]


def test_a_retrieved_instance_of_another_study_is_refused(loopback: Callable[[Answer], str],
                                                          sample_dicom: bytes) -> None:
    stored = dicom_copy(sample_dicom, "PAT-ELSE-1", "ACC-ELSE-1")
    body, kind = multipart.build([stored.dicom])
    url = loopback(reply(200, body, kind))
    asked = generate_uid()  # the same SOP Instance UID asked for in another study
    with PacsClient(PacsConfig(url)) as client, pytest.raises(PacsBadAnswer) as error:
        client.retrieve(asked, stored.series_uid, stored.sop_uid)
    assert error.value.message == (f"the PACS answered instance {stored.sop_uid} of study {asked} with an instance "
                                   f"of another study ({stored.study_uid})")


def test_refused_credentials_are_one_neutral_line_without_options(loopback: Callable[[Answer], str]) -> None:
    url = loopback(reply(401, b""))
    with PacsClient(PacsConfig(url, user="u", password="secret-password")) as client, \
            pytest.raises(PacsUnauthorized) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert error.value.message == f"the PACS refused medviz's credentials (HTTP 401 from {url} for a study search)"


def test_a_study_with_only_sr_and_pr_objects_opens_nothing_and_says_why(
        orthanc: Orthanc, pacs_config: PacsConfig) -> None:
    study = generate_uid()
    for sop_class, modality in (("1.2.840.10008.5.1.4.1.1.88.11", "SR"), ("1.2.840.10008.5.1.4.1.1.11.1", "PR")):
        orthanc.upload(_non_image(study, sop_class, modality))
    with PacsClient(pacs_config) as client, pytest.raises(PacsNoImages) as error:
        open_study(client, study)
    assert error.value.message == f"study {study} holds only non-image objects (SR, PR)"


def test_a_study_with_only_a_multi_frame_image_opens_nothing_and_says_why(
        orthanc: Orthanc, pacs_config: PacsConfig, sample_dicom: bytes) -> None:
    header = pydicom.dcmread(io.BytesIO(sample_dicom))
    frames = dicom_copy(sample_dicom, "PAT-MULTI-1", "ACC-MULTI-1", NumberOfFrames=2,
                        PixelData=header.PixelData * 2)
    orthanc.upload(frames.dicom)
    with PacsClient(pacs_config) as client, pytest.raises(PacsNoImages) as error:
        open_study(client, frames.study_uid)
    assert error.value.message == (f"study {frames.study_uid} holds only multi-frame images, which medviz does not "
                                   "read (one frame per image)")


def test_an_instance_over_the_size_limit_is_refused_without_being_kept(
        pacs_config: PacsConfig, stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("PAT-BIG-1", "ACC-BIG-1")
    small = dataclasses.replace(pacs_config, max_instance_bytes=500_000)
    with PacsClient(small) as client, pytest.raises(PacsTooLarge) as error:
        client.retrieve(study.study_uid, study.series_uid, study.sop_uid)
    assert error.value.message == (f"the PACS at {pacs_config.root} answered instance {study.sop_uid} of study "
                                   f"{study.study_uid} with more than 565536 bytes; medviz stopped reading there and "
                                   "used none of it")


def _dataset(sample: bytes, study: str, description: str) -> pydicom.Dataset:
    dataset = pydicom.dcmread(io.BytesIO(dicom_copy(sample, "P", "A", study_uid=study).dicom))
    dataset.SeriesDescription = description
    return dataset


def _non_image(study: str, sop_class: str, modality: str) -> bytes:
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = sop_class
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = sop_class, dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, generate_uid()
    dataset.Modality, dataset.PatientID = modality, "PAT-NONIMAGE-1"
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_orthanc_refuses_an_object_of_another_study_and_stores_the_rest(
        orthanc: Orthanc, pacs_config: PacsConfig, sample_dicom: bytes) -> None:
    study = dicom_copy(sample_dicom, "PAT-STOW-1", "ACC-STOW-1")
    orthanc.upload(study.dicom)
    same = dicom_copy(sample_dicom, "PAT-STOW-1", "ACC-STOW-1", study_uid=study.study_uid)
    other = dicom_copy(sample_dicom, "PAT-STOW-2", "ACC-STOW-2")
    with PacsClient(pacs_config) as client:
        report = client.store(study.study_uid, [same.dicom, other.dicom])
        alone = client.store(study.study_uid, [other.dicom])
    assert (report.stored, report.failed) == ((same.sop_uid,), ((other.sop_uid, 0x0110),))
    assert (alone.stored, alone.failed) == ((), ((other.sop_uid, 0x0110),))
