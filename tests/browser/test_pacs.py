"""The PACS in the real browser against `medviz serve --model tiny --pacs URL` on a real Orthanc: search by patient
ID, pick the study, see its series with thumbnails and the frontal and lateral views ticked, start the session,
pin a token, Send to PACS, and read the server's line; Orthanc then holds the new series in the same study."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Server, open_page, shoot
from tests.browser.pages import wait_phase
from tests.orthanc import USER, Orthanc
from tests.pacs.conftest import PacsStudy, orthanc, sample_dicom, stored_study  # noqa: F401  (fixtures)
from tests.server.serve_process import link_token, serve_process

SHOT = "pacs-search"


@pytest.fixture(scope="module")
def pacs_serve(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """`medviz serve --model tiny --pacs URL --pacs-user U --pacs-password-file F` on 127.0.0.1."""
    root = tmp_path_factory.mktemp("serve-pacs")
    recordings = root / "recordings"
    recordings.mkdir()
    options = ["--model", "tiny", "--host", "127.0.0.1", "--recordings", str(recordings), "--pacs", orthanc.dicomweb,
               "--pacs-user", USER, "--pacs-password-file", str(orthanc.password_file())]
    with serve_process(options, root / "server.log") as (port, line):
        yield Server(url=f"http://127.0.0.1:{port}", recordings=recordings, token=link_token(line))


def test_a_study_found_in_the_pacs_runs_and_its_pinned_token_is_sent_back_into_it(
        browser: Any, pacs_serve: Server, stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:  # noqa: F811
    pa = stored_study("P3-BROWSER", "ACC-P3-B", view="PA")
    stored_study("P3-BROWSER", "ACC-P3-B", view="LL", study_uid=pa.study_uid)
    tab = open_page(browser, pacs_serve, width=1280, height=900)
    page = tab.page
    try:
        page.goto(pacs_serve.link)
        page.wait_for_selector("#pacs:not([hidden])")
        page.click("#pacs summary")
        page.fill("#pacs-patient-id", "P3-BROWSER")
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
        page.click("#pacs-start")
        wait_phase(page, "ended")
        page.dispatch_event("#report .tok[data-i='1']", "click")
        page.wait_for_selector("#detail:not([hidden])")
        page.wait_for_selector("#send-pacs:not([disabled])")
        page.click("#send-pacs")
        page.wait_for_selector("#pacs-send-status .dicom-line[data-status='done']", timeout=120_000)
        line = page.inner_text("#pacs-send-status .dicom-line")
        assert line.startswith("Send to PACS of token #1 · ") and " · sent " in line, line
        assert len(orthanc.study_series(pa.study_uid)) > 2
        assert tab.errors == []
    finally:
        page.context.close()
