"""Export DICOM in the real browser against `medviz serve --model tiny`: the button asks the
server for the pinned token's export with the shown method, the page downloads the zip it
answers as medviz-dicom-token<i>.zip, and shows the notes that came with it (a PNG source
has no patient identity)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import start_session, wait_phase

NO_IDENTITY = ("the source was PNG/JPEG: this export has no patient identity "
               "(patient name, ID, birth date and sex are empty) and is in a new study")


def test_export_dicom_downloads_the_pinned_tokens_zip_and_shows_its_notes(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=6)
    wait_phase(page, "ended")
    page.select_option("#method", "rollout")
    page.dispatch_event("#report .tok[data-i='2']", "click")  # tiny's tokens may be too narrow to click
    page.wait_for_selector("#detail:not([hidden])")
    assert page.is_hidden("#detail-tab-volume")
    with page.expect_download(timeout=120_000) as download:
        page.click("#export-dicom")
    assert download.value.suggested_filename == "medviz-dicom-token2.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
        assert all(archive.read(name)[128:132] == b"DICM" for name in names)
    assert names and all(name.startswith("medviz_rollout_") and name.endswith(".dcm") for name in names)
    page.wait_for_selector("#dicom-status .dicom-notes li")
    line = page.inner_text("#dicom-status .dicom-line")
    assert line == (f"DICOM export of token #2 · Rollout · Downloaded medviz-dicom-token2.zip: {len(names)} DICOM "
                    f"file{'' if len(names) == 1 else 's'} ({', '.join(names)})")
    assert NO_IDENTITY in page.locator("#dicom-status .dicom-notes li").all_inner_texts()
    shoot(page, "dicom-export")
    assert tab.errors == []
