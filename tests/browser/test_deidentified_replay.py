"""A recording made by `medviz record` (identity removed by default) from a DICOM that names its patient replays
in the real browser against `medviz serve --model tiny`, its report as recorded, and its Export DICOM downloads
objects without the patient's identity (docs/deidentification.md)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from server.cli.main import main
from tests.browser.conftest import Server, Watched
from tests.browser.pages import open_replay, recorded, report_text
from tests.identified import identified_dicom, leaks


def test_a_deidentified_recording_replays_and_its_export_dicom_holds_no_identity(
        tab: Watched, server: Server, cxr_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "identified.dcm"
    image.write_bytes(identified_dicom(cxr_dir))
    out = server.recordings / "teaching_dicom.medviz"
    assert main(["record", str(image), "--out", str(out), "--model", "tiny", "--max-new-tokens", "4"]) == 0
    page = tab.page
    open_replay(page, server.url, out.stem, 1)
    _, steps = recorded(out)
    assert report_text(page).endswith("".join(s.text for s in steps).strip())
    with page.expect_download(timeout=120_000) as download:
        page.click("#export-dicom")
    with zipfile.ZipFile(download.value.path()) as archive:
        files = [archive.read(name) for name in archive.namelist()]
    assert len(files) == 4 and [leaks(data) for data in files] == [[], [], [], []]
    assert leaks(page.content().encode()) == []
    assert tab.errors == []
