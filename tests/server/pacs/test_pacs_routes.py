"""The server's PACS routes on a real Orthanc: the browser's search by patient ID and accession, a study's series
with their view labels and thumbnails, Send to PACS of a pinned token into the same study from the live owner or
from a replay of a recording kept with identity (and a re-send that stores nothing new), and each failure as one
JSON line with its status while the server keeps serving: no PACS, an unreachable or slow one, refused
credentials, a study gone, a foreign Origin on all six routes, a watcher, a de-identified recording, a partial
store (each object's status). A token sent live is "already sent" from the replay of its recording. No answer
carries the PACS's password."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pydicom
from PIL import Image

from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import PacsPick
from server.pacs.config import PacsConfig
from server.pacs.errors import REFUSED_CREDENTIALS
from server.pacs.multipart import parts
from server.pacs.pinned import DEIDENTIFIED
from server.pacs.start import NO_PACS
from tests.orthanc import USER, Orthanc, free_port
from tests.pacs.conftest import PacsStudy
from tests.pacs.test_failures import Answer, loopback, reply  # noqa: F401  (loopback: a fixture)
from tests.server.helpers import LiveServer
from tests.server.pacs.conftest import OPERATOR
from tests.server.pacs.test_pacs_start import owned_session

SEND = {"index": 0, "method": "consensus"}


def get(server: LiveServer, path: str, **headers: str) -> httpx.Response:
    """GET `path` as the operator (the PACS key's header), with `headers` beside it."""
    return httpx.get(f"{server.http}{path}", headers={**OPERATOR, **headers}, timeout=60)


def post(server: LiveServer, body: dict[str, object], **headers: str) -> httpx.Response:
    """POST /api/pacs/send as the operator."""
    return httpx.post(f"{server.http}/api/pacs/send", json=body, headers={**OPERATOR, **headers}, timeout=120)


def test_without_a_pacs_the_page_is_told_so_and_every_other_pacs_route_answers_404(make_server: Callable[..., LiveServer]) -> None:
    server = make_server()
    assert get(server, "/api/pacs").json() == {"configured": False}  # the page asks at every load: no 404 to log
    for path in ("/api/pacs/studies?patient_id=X", "/api/pacs/studies/1.2/series", "/api/pacs/sendable?recording=x"):
        answer = get(server, path)
        assert (answer.status_code, answer.json()["error"]["message"]) == (404, NO_PACS)


def test_the_pacs_route_names_the_host_and_port_only(pacs_server: Callable[..., LiveServer], orthanc: Orthanc) -> None:
    answer = get(pacs_server(), "/api/pacs")
    assert answer.json() == {"configured": True, "allowed": True, "host": f"127.0.0.1:{orthanc.port}",
                             "max_results": 100, "page_size": 25}
    assert orthanc.password not in answer.text and USER not in answer.text


def test_a_stored_study_is_found_by_patient_id_and_by_accession(pacs_server: Callable[..., LiveServer],
                                                                stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-FIND-1", "ACC-P3-1")
    server = pacs_server()
    by_id = get(server, "/api/pacs/studies?patient_id=P3-FIND-1").json()
    by_accession = get(server, "/api/pacs/studies?accession=ACC-P3-1&date_from=2024-01-01&date_to=2024-01-31").json()
    assert by_id == by_accession
    assert (by_id["offset"], by_id["more"], len(by_id["studies"])) == (0, False, 1)
    found = by_id["studies"][0]
    assert (found["study_uid"], found["patient_id"], found["accession"], found["study_date"], found["modalities"],
            found["series_count"], found["instance_count"]) == (study.study_uid, "P3-FIND-1", "ACC-P3-1", "20240115",
                                                              ["DX"], 1, 1)
    assert get(server, "/api/pacs/studies?patient_id=NOBODY-P3").json()["studies"] == []


def test_a_study_lists_its_series_with_view_labels_and_the_views_chosen_by_default(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    pa = stored_study("P3-SERIES", "ACC-P3-2", view="PA")
    lateral = stored_study("P3-SERIES", "ACC-P3-2", view="LL", study_uid=pa.study_uid)
    answer = get(pacs_server(), f"/api/pacs/studies/{pa.study_uid}/series").json()
    views = {i["uid"]: (i["label"], i["usable"], i["default"]) for s in answer["series"] for i in s["instances"]}
    assert views == {pa.sop_uid: ("PA", True, True), lateral.sop_uid: ("lateral", True, True)}
    assert (answer["study"], answer["why"], len(answer["series"])) == (pa.study_uid, "", 2)


def test_a_thumbnail_is_the_pacs_rendered_image_and_is_not_cached(pacs_server: Callable[..., LiveServer],
                                                                  stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-THUMB", "ACC-P3-3")
    answer = get(pacs_server(), f"/api/pacs/studies/{study.study_uid}/series/{study.series_uid}/instances/"
                                f"{study.sop_uid}/thumbnail")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"] in ("image/jpeg", "image/png")
    with Image.open(io.BytesIO(answer.content)) as picture:
        assert picture.format in ("JPEG", "PNG") and max(picture.size) <= 1024


def test_send_to_pacs_stores_the_tokens_objects_into_the_same_study_and_a_resend_stores_nothing_new(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-SEND", "ACC-P3-5")
    server = pacs_server()
    owner, _ = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)))
    body = {"session": owner.session, "key": owner.key, **SEND}
    sent = post(server, body).json()
    stored = orthanc.study_series(study.study_uid)
    modalities = sorted(str(s["MainDicomTags"]["Modality"]) for s in stored)  # type: ignore[index]
    assert modalities == ["DX", "OT", "OT", "PR", "SEG"]  # the source; SC and PM; GSPS; SEG
    assert sent["message"] == "sent 4 objects into the study"
    assert [(o["series"].split(":")[0], o["status"]) for o in sent["objects"]] == [
        (f"medviz DEMO MODEL attention {what}", "sent") for what in ("overlay", "map", "regions", "outlines")]
    again = post(server, body).json()
    assert again["message"] == "already sent (same token and method): nothing new stored"
    assert {o["status"] for o in again["objects"]} == {"already"}
    assert len(orthanc.study_series(study.study_uid)) == len(stored)
    listed = get(server, f"/api/pacs/studies/{study.study_uid}/series").json()
    assert len(listed["series"]) == len(stored)
    leaks = [study.sop_uid, study.study_uid, "P3-SEND", orthanc.password]
    assert not [value for value in leaks if value in sent["message"] + again["message"] + str(sent["objects"])]


def test_only_the_sessions_owner_may_send_it(pacs_server: Callable[..., LiveServer],
                                           stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-WATCH", "ACC-P3-6")
    server = pacs_server()
    owner, _ = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)))
    answer = post(server, {"session": owner.session, "key": "not-the-key", **SEND})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("only the session's owner may send it to the PACS")


def test_an_unreachable_pacs_is_a_502_with_its_message_and_the_server_keeps_serving(
        pacs_server: Callable[..., LiveServer], pacs_config: PacsConfig) -> None:
    closed = PacsConfig(f"http://127.0.0.1:{free_port()}/dicom-web", user=USER, password=pacs_config.password,
                        connect_timeout_s=2)
    server = pacs_server(pacs=closed)
    answer = get(server, "/api/pacs/studies?patient_id=X")
    assert answer.status_code == 502 and answer.json()["error"]["kind"] == "unreachable"
    assert "127.0.0.1" in answer.json()["error"]["message"]
    assert get(server, "/api/health").status_code == 200


def test_refused_credentials_are_a_502_never_a_401_and_never_show_the_password(
        pacs_server: Callable[..., LiveServer], pacs_config: PacsConfig) -> None:
    wrong = PacsConfig(pacs_config.url, user=USER, password="wrong-password-p3")
    answer = get(pacs_server(pacs=wrong), "/api/pacs/studies?patient_id=X")
    assert answer.status_code == 502
    assert answer.json()["error"]["message"].startswith(REFUSED_CREDENTIALS)
    assert "wrong-password-p3" not in answer.text


def test_a_study_gone_from_the_pacs_is_a_404_with_its_kind(pacs_server: Callable[..., LiveServer],
                                                          stored_study: Callable[..., PacsStudy],
                                                          orthanc: Orthanc) -> None:
    study = stored_study("P3-GONE-1", "ACC-P3-7")
    orthanc.delete_study(study.study_uid)
    answer = get(pacs_server(), f"/api/pacs/studies/{study.study_uid}/series")
    assert answer.status_code == 404 and answer.json()["error"]["kind"] == "not_found"


def test_a_foreign_origin_gets_403_from_all_six_pacs_routes_even_with_the_pacs_key(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-ORIGIN", "ACC-P3-11")
    server = pacs_server()
    evil = {"origin": "https://evil.example"}
    answers = [get(server, path, **evil) for path in (
        "/api/pacs", "/api/pacs/studies?patient_id=P3-ORIGIN", f"/api/pacs/studies/{study.study_uid}/series",
        f"/api/pacs/studies/{study.study_uid}/series/{study.series_uid}/instances/{study.sop_uid}/thumbnail",
        "/api/pacs/sendable?recording=x")] + [post(server, SEND, **evil)]
    assert [(a.status_code, a.json()["error"]["message"]) for a in answers] == [
        (403, "origin 'https://evil.example' may not use the PACS here")] * 6
    assert "P3-ORIGIN" not in "".join(a.text for a in answers)


def test_a_bad_uid_in_a_path_never_reaches_the_pacs(pacs_server: Callable[..., LiveServer]) -> None:
    answer = get(pacs_server(), "/api/pacs/studies/1.2..3/series")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == ("the study must be a DICOM UID (digits and dots, at most 64 "
                                                 "characters); got '1.2..3'")


def test_a_sent_object_is_a_dicom_of_the_source_patient(pacs_server: Callable[..., LiveServer],
                                                         stored_study: Callable[..., PacsStudy],
                                                         orthanc: Orthanc) -> None:
    study = stored_study("P3-IDENTITY", "ACC-P3-8")
    server = pacs_server()
    owner, _ = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)))
    post(server, {"session": owner.session, "key": owner.key, **SEND})
    with orthanc.rest() as rest:
        series = [s for s in orthanc.study_series(study.study_uid) if s["MainDicomTags"]["Modality"] == "OT"]  # type: ignore[index]
        instance = series[0]["Instances"][0]  # type: ignore[index]
        header = pydicom.dcmread(io.BytesIO(rest.get(f"/instances/{instance}/file").content))
    assert (header.PatientID, header.StudyInstanceUID) == ("P3-IDENTITY", study.study_uid)


def recorded_from_pacs(server: LiveServer, study: PacsStudy) -> str:
    """A recorded session on `study` from the PACS, to its end: its recording id."""
    _, data = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)), record=True)
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None, start
    return start.recording


def test_a_replay_of_a_recording_kept_with_identity_may_be_sent_and_a_de_identified_one_says_why_not(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-REPLAY", "ACC-P3-9")
    kept = pacs_server(recordings_keep_identity=True)
    recording = recorded_from_pacs(kept, study)
    assert get(kept, f"/api/pacs/sendable?recording={recording}").json() == {"ok": True, "why": ""}
    sent = post(kept, {"recording": recording, **SEND}).json()
    assert sent["message"] == "sent 4 objects into the study"
    assert len(orthanc.study_series(study.study_uid)) == 5

    other = stored_study("P3-REPLAY-2", "ACC-P3-10")
    plain = pacs_server()
    hidden = recorded_from_pacs(plain, other)
    assert get(plain, f"/api/pacs/sendable?recording={hidden}").json() == {"ok": False, "why": DEIDENTIFIED}
    refused = post(plain, {"recording": hidden, **SEND})
    assert (refused.status_code, refused.json()["error"]["message"]) == (400, DEIDENTIFIED)
    assert len(orthanc.study_series(other.study_uid)) == 1


def test_a_slow_pacs_is_a_504_with_its_timeout_and_the_server_keeps_serving(
        pacs_server: Callable[..., LiveServer], loopback: Callable[[Answer], str]) -> None:  # noqa: F811
    def slow(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(2)
        reply(200, b"[]")(handler)

    url = loopback(slow)
    server = pacs_server(pacs=PacsConfig(url, read_timeout_s=0.3))
    answer = get(server, "/api/pacs/studies?patient_id=X")
    assert (answer.status_code, answer.json()["error"]) == (504, {
        "code": "error", "kind": "timeout",
        "message": f"the PACS at {url} did not answer a study search within 0.3 s (read_timeout_s)"})
    assert get(server, "/api/health").status_code == 200


@contextlib.contextmanager
def refusing_proxy(orthanc: Orthanc) -> Iterator[str]:
    """A DICOMweb root on 127.0.0.1 that passes every GET on to the real Orthanc and answers a STOW-RS itself: its
    first object stored, each other one in a FailedSOPSequence (0xA700, out of resources)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            upstream = httpx.get(orthanc.dicomweb + self.path.removeprefix("/dicom-web"), auth=(USER, orthanc.password),
                                 headers={"Accept": self.headers.get("Accept", "*/*")}, timeout=30)
            self._answer(upstream.status_code, upstream.content, upstream.headers.get("content-type", ""))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            uids = [str(pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID)
                    for _, part in parts(body, self.headers["Content-Type"], "a store")]
            refused = [{"00081155": {"vr": "UI", "Value": [uid]}, "00081197": {"vr": "US", "Value": [0xA700]}}
                       for uid in uids[1:]]
            answer = {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": uids[:1]}}]},
                      "00081198": {"vr": "SQ", "Value": refused}}
            self._answer(202, json.dumps(answer).encode(), "application/dicom+json")

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def test_a_partial_store_is_a_502_store_partial_with_each_objects_status(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-PARTIAL", "ACC-P3-12")
    recording = recorded_from_pacs(pacs_server(recordings_keep_identity=True), study)
    with refusing_proxy(orthanc) as url:
        server = pacs_server(pacs=PacsConfig(url), recordings_keep_identity=True)  # the same recordings folder
        answer = post(server, {"recording": recording, **SEND})
    body = answer.json()
    assert (answer.status_code, body["error"]["kind"]) == (502, "store_partial")
    refused = "failed: out of resources (0xA700)"
    assert [(o["series"].split(":")[0], o["status"]) for o in body["objects"]] == [
        ("medviz DEMO MODEL attention overlay", "sent"), ("medviz DEMO MODEL attention map", refused),
        ("medviz DEMO MODEL attention regions", refused), ("medviz DEMO MODEL attention outlines", refused)]
    assert body["error"]["message"] == body["message"]
    assert body["message"].startswith("sent 1 object into the study; 3 of 4 objects were refused: ")
    assert study.study_uid not in answer.text and "P3-PARTIAL" not in answer.text


def test_a_token_sent_live_is_already_sent_from_the_replay_of_its_recording_kept_with_identity(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-LIVE-REPLAY", "ACC-P3-13")
    server = pacs_server(recordings_keep_identity=True)
    owner, data = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)), record=True)
    start = frames.decode(data[0])
    assert isinstance(start, frames.StartFrame) and start.recording is not None, start
    live = post(server, {"session": owner.session, "key": owner.key, **SEND}).json()
    assert live["message"] == "sent 4 objects into the study"
    stored = orthanc.study_series(study.study_uid)
    replayed = post(server, {"recording": start.recording, **SEND}).json()
    assert replayed["message"] == "already sent (same token and method): nothing new stored"
    assert [o["status"] for o in replayed["objects"]] == ["already"] * 4
    assert [s["ID"] for s in orthanc.study_series(study.study_uid)] == [s["ID"] for s in stored]
