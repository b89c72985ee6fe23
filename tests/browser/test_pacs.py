"""The PACS in the real browser against `medviz serve --model tiny --pacs URL` on a real Orthanc, opened from the
operator's link (token and PACS key): search by accession, then by patient ID, pick the study, see its series with
thumbnails and the frontal and lateral views ticked, start the session, pin a token, Send to PACS, and read the
server's line; Orthanc then holds exactly the 2 views and 4 objects per view, each GSPS on its own view's image. The
address bar and the share link never carry the PACS key, and a page opened from a share link shows no PACS; a start
after the PACS key's cookie is gone shows the server's own line, not a token problem."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

from server.guard.security import NO_PACS_KEY
from server.pacs.pinned import NOT_FROM_PACS
from tests.browser.conftest import Server, open_page, shoot
from tests.browser.pages import start_session, wait_phase
from tests.orthanc import USER, Orthanc
from tests.pacs.conftest import PacsStudy, orthanc, sample_dicom, stored_study  # noqa: F401  (fixtures)
from tests.server.serve_process import link_pacs_key, link_token, serve_process

SHOT = "pacs-search"


@dataclass(frozen=True)
class PacsServer(Server):
    pacs_key: str = ""  # the PACS key of the operator's link it printed

    @property
    def operator_link(self) -> str:
        return f"{self.link}&pacs_key={self.pacs_key}"


@pytest.fixture(scope="module")
def pacs_serve(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsServer]:  # noqa: F811
    """`medviz serve --model tiny --pacs URL --pacs-user U --pacs-password-file F` on 127.0.0.1."""
    root = tmp_path_factory.mktemp("serve-pacs")
    recordings = root / "recordings"
    recordings.mkdir()
    options = ["--model", "tiny", "--host", "127.0.0.1", "--recordings", str(recordings), "--pacs", orthanc.dicomweb,
               "--pacs-user", USER, "--pacs-password-file", str(orthanc.password_file())]
    with serve_process(options, root / "server.log") as (port, line):
        yield PacsServer(url=f"http://127.0.0.1:{port}", recordings=recordings, token=link_token(line),
                         pacs_key=link_pacs_key(line))


def gsps_references(archive: Orthanc, study_uid: str) -> list[tuple[str, str]]:
    """(referenced series, referenced SOP instance) of each GSPS (PR) Orthanc holds in the study."""
    found = []
    with archive.rest() as rest:
        for series in archive.study_series(study_uid):
            if series["MainDicomTags"]["Modality"] != "PR":  # type: ignore[index]
                continue
            for instance in series["Instances"]:  # type: ignore[index]
                gsps = pydicom.dcmread(io.BytesIO(rest.get(f"/instances/{instance}/file").content))
                ref = gsps.ReferencedSeriesSequence[0]
                found.append((str(ref.SeriesInstanceUID), str(ref.ReferencedImageSequence[0].ReferencedSOPInstanceUID)))
    return sorted(found)


def test_a_study_found_in_the_pacs_runs_and_its_pinned_token_is_sent_back_into_it(
        browser: Any, pacs_serve: Server, stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:  # noqa: F811
    pa = stored_study("P3-BROWSER", "ACC-P3-B", view="PA")
    lateral = stored_study("P3-BROWSER", "ACC-P3-B", view="LL", study_uid=pa.study_uid)
    tab = open_page(browser, pacs_serve, width=1280, height=900)
    page = tab.page
    try:
        page.goto(pacs_serve.operator_link)
        page.wait_for_selector("#pacs:not([hidden])")
        assert "pacs_key" not in page.url and f"token={pacs_serve.token}" in page.url  # the key lives in its cookie
        page.click("#pacs summary")
        for field, value in (("#pacs-accession", "ACC-P3-B"), ("#pacs-patient-id", "P3-BROWSER")):
            page.evaluate("() => { document.querySelector('#pacs-rows').innerHTML = ''; }")  # this search's rows only
            page.fill("#pacs-accession", "")
            page.fill("#pacs-patient-id", "")
            page.fill(field, value)
            page.keyboard.press("Enter")
            page.wait_for_selector("#pacs-rows tr")
            lines = page.locator("#pacs-rows tr td span").all_inner_texts()
            assert lines[:3] == ["2024-01-15", "DX", "P3-BROWSER"] and lines[4:] == ["ACC-P3-B", "2 images"], lines
        page.focus("#pacs-rows tr")
        page.keyboard.press("Enter")
        page.wait_for_selector("#pacs-series .pacs-view img")
        page.wait_for_function("() => [...document.querySelectorAll('#pacs-series img')]"
                               ".every((i) => i.complete && i.naturalWidth > 0)")
        labels = page.locator("#pacs-series .pacs-view span").all_inner_texts()
        assert sorted(labels) == ["PA", "lateral"]
        assert page.locator("#pacs-series input:checked").count() == 2
        assert page.inner_text("#pacs-start") == "Start on 2 views"
        page.locator("#pacs").screenshot(path=str(Path(shoot(page, SHOT)).with_name(f"{SHOT}-card.png")))
        page.fill("#max-tokens", "4")
        page.check("#record")
        page.click("#pacs-start")
        wait_phase(page, "ended")
        page.wait_for_selector("#share[data-url*='replay=']")
        shared = page.get_attribute("#share", "data-url") or ""
        assert f"token={pacs_serve.token}" in shared and "pacs_key" not in shared and pacs_serve.pacs_key not in shared
        page.dispatch_event("#report .tok[data-i='1']", "click")
        page.wait_for_selector("#detail:not([hidden])")
        page.wait_for_selector("#send-pacs:not([disabled])")
        page.click("#send-pacs")
        page.wait_for_selector("#pacs-send-status .dicom-line[data-status='done']", timeout=120_000)
        line = page.inner_text("#pacs-send-status .dicom-line")
        assert line.startswith("Send to PACS of token #1 · ") and " · sent " in line, line
        assert len(orthanc.study_series(pa.study_uid)) == 2 + 4 * 2  # the 2 views, 4 objects per view
        assert gsps_references(orthanc, pa.study_uid) == sorted([(pa.series_uid, pa.sop_uid),
                                                                 (lateral.series_uid, lateral.sop_uid)])
        assert tab.errors == []
    finally:
        page.context.close()


def test_a_page_opened_from_a_share_link_shows_no_pacs_and_cannot_search_it(
        browser: Any, pacs_serve: PacsServer) -> None:
    tab = open_page(browser, pacs_serve)
    page = tab.page
    try:
        page.goto(pacs_serve.link)  # the token only, as every share and watch link
        page.wait_for_load_state("networkidle")
        assert page.is_hidden("#pacs")
        answer = page.request.get(f"{pacs_serve.url}/api/pacs/studies?patient_name=*")  # this page's cookies
        assert (answer.status, answer.json()["error"]["message"]) == (
            403, "this link does not open the PACS: ask the presenter for the operator link")
        assert tab.errors == []
    finally:
        page.context.close()


def test_a_start_from_the_pacs_after_the_pacs_key_is_gone_shows_the_servers_own_line(
        browser: Any, pacs_serve: PacsServer, stored_study: Callable[..., PacsStudy]) -> None:  # noqa: F811
    stored_study("P3-NO-KEY", "ACC-P3-NOKEY", view="PA")
    tab = open_page(browser, pacs_serve)
    page = tab.page
    try:
        page.goto(pacs_serve.operator_link)
        page.wait_for_selector("#pacs:not([hidden])")
        page.click("#pacs summary")
        page.fill("#pacs-accession", "ACC-P3-NOKEY")
        page.keyboard.press("Enter")
        page.wait_for_selector("#pacs-rows tr")
        page.focus("#pacs-rows tr")
        page.keyboard.press("Enter")
        page.wait_for_selector("#pacs-start:not([disabled])")
        page.context.clear_cookies()  # the PACS key's cookie gone (a server restarted with a new key, say)
        page.click("#pacs-start")
        page.wait_for_selector("#banner:not([hidden])")
        assert page.inner_text("#banner-text") == NO_PACS_KEY  # as is: not "needs a valid access token"
    finally:
        page.context.close()


def test_a_session_started_from_uploaded_files_offers_no_send_to_pacs_and_says_why(
        browser: Any, pacs_serve: PacsServer, cxr_dir: Path) -> None:
    tab = open_page(browser, pacs_serve)
    page = tab.page
    try:
        start_session(page, pacs_serve.operator_link, cxr_dir / "nih_00000002_000_dx.dcm", max_tokens=2)
        wait_phase(page, "ended")
        page.dispatch_event("#report .tok[data-i='1']", "click")
        page.wait_for_selector("#send-pacs[disabled]")
        assert page.get_attribute("#send-pacs", "title") == NOT_FROM_PACS
        assert tab.errors == []
    finally:
        page.context.close()
