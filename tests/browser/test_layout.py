"""The viewer fits a 1280 x 800 laptop and a 1920 x 1080 projector: nothing spills out of
the window, every main area is on screen, and the page logs no console errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import Server, open_page, shoot
from tests.browser.pages import start_session, wait_phase

AREAS = ["#stage", "#report", "#strip", "#methods-grid", "#start", "#status", "#method", "#opacity"]


@pytest.mark.parametrize("width,height", [(1280, 800), (1920, 1080)])
def test_the_viewer_fits_the_screen_with_every_area_visible(browser: object, server: Server, cxr_dir: Path, width: int, height: int) -> None:
    watched = open_page(browser, server, width, height)
    page = watched.page
    try:
        start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=32)
        wait_phase(page, "ended")
        shoot(page, f"11_layout_{width}x{height}")
        overflow = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert overflow == [width, height]
        for selector in AREAS:
            box = page.locator(selector).bounding_box()
            assert box is not None, f"{selector} is not rendered"
            inside = box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width
            assert inside, f"{selector} spills out of a {width} x {height} window: {box}"
        stage = page.locator("#stage").bounding_box()
        assert stage is not None and stage["height"] >= 0.6 * (height - 48) - 60
        assert watched.errors == []
    finally:
        page.context.close()
