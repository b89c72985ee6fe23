"""Recording and replay in the real browser: a recorded session appears in the library,
plays at 4x through the same rendering as live, and seeking to the middle shows that
token's map, pixel for pixel as the live view showed it; a study recorded by the v1 code
(the server upgrades it to v2) replays with its recorded tokens, without context links."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import (
    SETTLED,
    canvas_digest,
    distinct_colours,
    recorded,
    report_text,
    shown_step,
    start_session,
    token_count,
    wait_phase,
)

V1_STUDY = Path(__file__).resolve().parents[1] / "fixtures" / "recordings" / "v1_study.medviz"


def exported_view(page: Any) -> bytes:
    """The "Export view PNG" picture, decoded: it does not depend on the window's layout."""
    page.wait_for_function(SETTLED)
    with page.expect_download() as download:
        page.click("#export-view")
    with Image.open(download.value.path()) as picture:
        return picture.convert("RGBA").tobytes()


def test_a_recorded_session_replays_at_4x_and_seeking_shows_that_tokens_map(tab: Watched, second_tab: Watched, server: Server, cxr_dir: Path) -> None:
    live = tab.page
    before = {p.stem for p in server.recordings.glob("*.medviz")}
    start_session(live, server.url, cxr_dir / "nih_00000003_001.png", max_tokens=40, record=True)
    wait_phase(live, "ended")
    (recording,) = {p.stem for p in server.recordings.glob("*.medviz")} - before
    total = token_count(live)
    middle = total // 2
    live.click(f"#report .tok[data-i='{middle}']")
    live.wait_for_function(f"() => document.getElementById('stage').dataset.step === '{middle}'")
    live_map = exported_view(live)
    live_text = report_text(live)

    page = second_tab.page
    page.goto(server.url)
    page.click("#tab-library")
    page.wait_for_selector("#library-list .rec")
    shoot(page, "08_library")
    row = f"#library-list .rec[data-id='{recording}']"
    assert page.locator("#library-list .rec").first.get_attribute("data-id") == recording  # newest first
    assert f"{total} tokens" in page.inner_text(row)
    page.click(f"{row} button.primary")
    page.wait_for_selector("#player:not([hidden])")
    page.select_option("#speed", "4")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('4×')")
    wait_phase(page, "ended")
    shoot(page, "09_replay_ended")
    assert report_text(page) == live_text

    page.evaluate(f"""() => {{
      const seek = document.getElementById('seek');
      seek.value = '{middle}';
      seek.dispatchEvent(new Event('input'));
      seek.dispatchEvent(new Event('change'));
    }}""")
    page.wait_for_function(f"() => document.getElementById('stage').dataset.step === '{middle}'")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('paused')")
    shoot(page, "10_replay_seek_middle")
    assert shown_step(page) == middle
    assert page.inner_text("#seek-label") == f"token {middle + 1} / {total}"
    assert exported_view(page) == live_map
    assert tab.errors == [] and second_tab.errors == []


def test_a_v1_study_recording_replays_with_its_recorded_tokens_and_no_context_links(tab: Watched, server: Server) -> None:
    shutil.copy(V1_STUDY, server.recordings / "v1_study_fixture.medviz")
    start, steps = recorded(V1_STUDY)
    page = tab.page
    page.goto(f"{server.url}/?replay=v1_study_fixture")
    page.wait_for_selector("#player:not([hidden])")
    page.select_option("#speed", "8")
    wait_phase(page, "ended")
    shown = page.evaluate("() => [...document.querySelectorAll('#report .tok')].map(t => t.classList.contains('special') ? null : t.textContent)")
    assert shown == [None if s.is_special else s.text for s in steps]
    assert page.locator(".pane-title").all_inner_texts() == ["PA", "lateral"]
    assert page.inner_text("#session-info") == f"{start.model.name} · prompt medviz · question “{start.question}”"
    assert page.inner_text("#prompt-summary") == "Prompt · medviz · its words are not in this recording"
    page.dispatch_event("#report .tok[data-i='1']", "click")
    page.wait_for_selector("#detail:not([hidden])")
    assert page.locator("#reading .read").count() == 0 and page.locator("#context-links path").count() == 0
    page.click("#detail-tab-volume")
    page.wait_for_selector("#volume-canvas[data-step='1'][data-empty='false']", timeout=60_000)
    assert distinct_colours(canvas_digest(page, "#volume-canvas")) > 20
    shoot(page, "12_v1_study_replay")
    assert tab.errors == []
