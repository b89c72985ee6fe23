"""A study of two X-rays in the real browser against `medviz serve --model tiny`: both
images stream side by side, each with its own heatmap and label, the shares bar splits
each token's attention, and the recording replays both maps; the image selector drives
the method grid and the detail panel."""

from __future__ import annotations

from pathlib import Path

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import canvas_digest, distinct_colours, open_recording, start_study, token_count, wait_phase

PAIR = ["nih_00000001_000.png", "nih_00000003_001.png"]


def both_maps_drawn(page: object) -> None:
    for selector in ["#stage", "#stage-1"]:
        page.wait_for_function(f"() => Number(document.querySelector('{selector}').dataset.step) >= 0")  # type: ignore[attr-defined]
        page.wait_for_function(f"() => document.querySelector('{selector}').dataset.animating !== 'true'")  # type: ignore[attr-defined]
        assert distinct_colours(canvas_digest(page, selector)) > 20, f"{selector} looks blank"


def test_a_two_image_study_streams_records_and_replays_both_maps(tab: Watched, second_tab: Watched, server: Server, cxr_dir: Path) -> None:
    live = tab.page
    start_study(live, server.url, [cxr_dir / n for n in PAIR], ["PA", "prior"], max_tokens=16, record=True)
    live.wait_for_selector("#panes[data-count='2']")
    wait_phase(live, "ended")
    shoot(live, "20_study_live")
    both_maps_drawn(live)
    assert live.locator(".pane-title").all_inner_texts() == ["PA", "prior"]
    assert live.locator("#shares .share").count() == 2
    titles = [live.get_attribute(f"#shares .share[data-image='{k}']", "title") for k in range(2)]
    assert [t.split(":")[0] for t in titles if t] == ["PA", "prior"]
    assert "text" in live.inner_text("#shares")
    total = token_count(live)

    page = second_tab.page
    open_recording(page, server.url)
    page.wait_for_selector("#panes[data-count='2']")
    both_maps_drawn(page)
    shoot(page, "21_study_replay")
    assert token_count(page) == total
    assert page.locator("#shares .share").count() == 2
    assert page.locator("#image-select button").all_inner_texts() == ["PA", "prior"]
    assert tab.errors == [] and second_tab.errors == []


def test_the_image_selector_drives_the_grid_and_the_detail_panel(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_study(page, server.url, [cxr_dir / n for n in PAIR], ["PA", "lateral"], max_tokens=12)
    wait_phase(page, "ended")
    first = canvas_digest(page, ".method-tile[data-method='consensus'] canvas")
    page.click("#image-select button[data-image='1']")
    page.wait_for_selector(".pane.selected[data-image='1']")
    second = canvas_digest(page, ".method-tile[data-method='consensus'] canvas")
    assert first != second
    reliance = page.inner_text("#stats").split("Image reliance")[1].split("\n")[1]
    assert " on lateral · " in reliance and reliance.endswith(" on all images")
    page.click("#report .tok[data-i='4']")
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("() => document.getElementById('detail-h').textContent.startsWith('Token #4')")
    assert page.inner_text("#detail-h").endswith("· lateral")
    shoot(page, "22_study_detail_lateral")
    page.click("#detail-tab-overview")
    page.wait_for_selector("#overview .thumb")
    assert tab.errors == []
