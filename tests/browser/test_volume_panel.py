"""The 3D tab in the real browser against `medviz serve --model tiny`: a study labelled PA
and lateral offers it, it asks the server for the pinned token's volume and draws it,
follows the token to the next one (the canvas changes), and exports what it shows as a
PNG; a study without one frontal and one lateral view does not offer it."""

from __future__ import annotations

from pathlib import Path

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import canvas_digest, distinct_colours, start_study, wait_phase

PAIR = ["nih_00000001_000.png", "nih_00000003_001.png"]


def shown_volume(page: object, index: int) -> list[int]:
    page.wait_for_selector(f"#volume-canvas[data-step='{index}'][data-empty='false']", timeout=60_000)  # type: ignore[attr-defined]
    return canvas_digest(page, "#volume-canvas")


def test_a_pa_and_lateral_study_shows_the_pinned_tokens_volume_and_follows_the_token(
    tab: Watched, server: Server, cxr_dir: Path
) -> None:
    page = tab.page
    start_study(page, server.url, [cxr_dir / n for n in PAIR], ["PA", "lateral"], max_tokens=10)
    wait_phase(page, "ended")
    page.click("#report .tok[data-i='2']")
    page.wait_for_selector("#detail:not([hidden])")
    page.click("#detail-tab-volume")
    first = shown_volume(page, 2)
    assert distinct_colours(first) > 20
    caption = page.inner_text("#volume figcaption")
    assert caption.startswith("#2 ") and " · Consensus · PA × lateral · peak at row " in caption
    page.click("#next-token")
    second = shown_volume(page, 3)
    assert second != first
    assert page.inner_text("#volume figcaption").startswith("#3 ")
    shoot(page, "3d-view")
    with page.expect_download() as download:
        page.click("#volume .volume-export")
    assert download.value.suggested_filename == "medviz_3d_token3_consensus.png"
    with open(download.value.path(), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert tab.errors == []


def test_a_study_without_a_frontal_and_a_lateral_view_offers_no_3d_tab(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_study(page, server.url, [cxr_dir / n for n in PAIR], ["PA", "prior"], max_tokens=4)
    wait_phase(page, "ended")
    page.click("#report .tok[data-i='1']")
    page.wait_for_selector("#detail:not([hidden])")
    assert page.is_hidden("#detail-tab-volume")
    assert tab.errors == []
