"""A real `medviz serve --pacs`'s access log after a search and a thumbnail holds no patient ID, name, accession or
UID, and not the PACS key of the operator's link: each PACS request is logged as its route's words only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.orthanc import USER, Orthanc
from tests.pacs.conftest import PacsStudy
from tests.server.serve_process import link_pacs_key, link_token, serve_process


def test_the_access_log_of_a_search_and_a_thumbnail_names_no_patient_and_no_uid(
        orthanc: Orthanc, stored_study: Callable[..., PacsStudy], tmp_path: Path) -> None:
    study = stored_study("P3-LOG-ID", "ACC-P3-LOG", PatientName="LOGTEST^JANE")
    options = ["--model", "tiny", "--recordings", str(tmp_path / "recordings"), "--pacs", orthanc.dicomweb,
               "--pacs-user", USER, "--pacs-password-file", str(orthanc.password_file())]
    log = tmp_path / "server.log"
    with serve_process(options, log) as (port, line):
        token, key = link_token(line), link_pacs_key(line)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as browser:
            assert browser.get("/", params={"token": token, "pacs_key": key}).status_code == 303  # key off the address
            found = browser.get("/api/pacs/studies", params={"patient_id": "P3-LOG-ID", "patient_name": "LOGTEST*",
                                                              "accession": "ACC-P3-LOG"}).json()["studies"]
            assert [s["study_uid"] for s in found] == [study.study_uid]
            thumbnail = browser.get(f"/api/pacs/studies/{study.study_uid}/series/{study.series_uid}/instances/"
                                    f"{study.sop_uid}/thumbnail")
            assert thumbnail.status_code == 200
    text = log.read_text()
    served = text[text.index(line) + len(line):]
    assert '"GET /api/pacs/studies?*** HTTP/1.1" 200' in served
    assert '"GET /api/pacs/studies/***/series/***/instances/***/thumbnail HTTP/1.1" 200' in served
    secrets = ["P3-LOG-ID", "LOGTEST", "JANE", "ACC-P3-LOG", study.study_uid, study.series_uid, study.sop_uid, key]
    assert [secret for secret in secrets if secret in served] == []
