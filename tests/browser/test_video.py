"""The recording player's Video button in the real browser: it downloads the MP4 that `medviz video` writes
for the same recording and options (the method on screen, 1280x720, the recorded timing)."""

from __future__ import annotations

from pathlib import Path

from server.cli.main import main
from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import record_session


def test_the_players_video_button_downloads_the_mp4_the_cli_writes(tab: Watched, server: Server, cxr_dir: Path,
                                                                   tmp_path: Path) -> None:
    page = tab.page
    recording = record_session(page, server.url, server.recordings, cxr_dir / "nih_00000003_001.png", max_tokens=4)
    page.goto(f"{server.url}/?replay={recording}")
    page.wait_for_selector("#player:not([hidden]) #video:not([disabled])")
    with page.expect_download(timeout=120_000) as download:
        page.click("#video")
    page.wait_for_selector("#video-status[data-state='done']")
    shoot(page, "video_downloaded")
    assert download.value.suggested_filename == f"medviz-{recording}-consensus.mp4"
    assert page.inner_text("#video-status") == "Downloaded"
    assert page.get_attribute("#video-status", "title") == f"Downloaded medviz-{recording}-consensus.mp4"
    cli = tmp_path / "cli.mp4"
    assert main(["video", str(server.recordings / f"{recording}.medviz"), "--out", str(cli), "--quiet"]) == 0
    assert Path(download.value.path()).read_bytes() == cli.read_bytes()
    assert tab.errors == []
