"""A live session in the real browser against a real `medviz serve --model tiny`: tokens
stream and the heatmap moves, methods give different maps, a token opens its analysis
panel, a second person watching through the share link ends with the same report."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import (
    DIGEST,
    digest,
    recorded,
    report_text,
    shown_step,
    start_session,
    token_count,
    wait_phase,
)

LONG_RUN = 300  # tokens: long enough on 2 CPU cores for a watcher to join mid-stream


def watch_stream(page: Any, limit_s: float = 120.0) -> dict[int, list[int]]:
    """Heatmap pixels seen for each step index while the session runs."""
    seen: dict[int, list[int]] = {}
    deadline = time.monotonic() + limit_s
    while page.get_attribute("body", "data-phase") != "ended" and time.monotonic() < deadline:
        step = shown_step(page)
        if step >= 0 and step not in seen:
            seen[step] = page.evaluate(DIGEST)
        page.wait_for_timeout(40)
    return seen


def test_uploaded_xray_streams_tokens_and_the_heatmap_changes_between_steps(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=120)
    page.wait_for_selector("#report .tok")
    shoot(page, "01_streaming")
    seen = watch_stream(page)
    wait_phase(page, "ended")
    shoot(page, "02_ended")
    assert len(seen) >= 2, f"saw the heatmap at only {len(seen)} steps while streaming"
    pictures = list(seen.values())
    assert any(a != b for a, b in zip(pictures, pictures[1:]))
    status = page.inner_text("#status")
    assert status.startswith("Done")
    assert f" {token_count(page)} tokens in " in status
    assert tab.errors == []


def test_switching_methods_shows_a_different_map(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=24)
    wait_phase(page, "ended")
    consensus = digest(page)
    page.select_option("#method", "raw")
    page.wait_for_selector("#stage[data-method='raw']")
    raw = digest(page)
    shoot(page, "03_method_raw")
    page.click(".method-tile[data-method='rollout']")
    page.wait_for_selector("#stage[data-method='rollout']")
    rollout = digest(page)
    pictures = [rollout]
    for control, value in [("#contrast", "percentile"), ("#contrast", "log"), ("#palette", "jet")]:
        page.select_option(control, value)
        page.wait_for_timeout(50)
        pictures.append(digest(page))
    shoot(page, "03b_log_jet")
    assert raw != consensus
    assert rollout != raw
    assert all(a != b for a, b in zip(pictures, pictures[1:]))
    assert page.input_value("#method") == "rollout"
    assert tab.errors == []


def test_clicking_a_token_opens_its_analysis_panel_and_keys_move_it(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=24)
    wait_phase(page, "ended")
    page.click("#report .tok[data-i='5']")
    page.wait_for_selector("#detail:not([hidden])")
    titles = page.locator("#detail-tiles figcaption").all_inner_texts()
    assert titles == ["Original", "Raw", "Layer-weighted", "Head importance", "Flow", "Consensus",
                      "Overlay · Consensus", "Regions", "Statistics", "Attention values"]
    assert page.inner_text("#detail-h").startswith("Token #5")
    assert "Image reliance" in page.inner_text(".stats-tile")
    assert shown_step(page) == 5
    shoot(page, "04_token_detail")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('detail-h').textContent.startsWith('Token #6')")
    assert shown_step(page) == 6
    page.click("#detail-tab-overview")
    page.wait_for_selector("#overview .thumb")
    assert page.locator("#overview .thumb").count() >= 2
    shoot(page, "05_overview")
    with page.expect_download() as download:
        page.click("#export-detail")
    assert download.value.suggested_filename.endswith("_token6_analysis.png")
    page.keyboard.press("Escape")
    page.wait_for_selector("#detail", state="hidden")
    assert page.locator("#report .tok.pinned").count() == 0
    assert tab.errors == []


def test_a_watcher_joining_mid_stream_ends_with_the_same_report(tab: Watched, second_tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=LONG_RUN)
    page.wait_for_selector("#report .tok[data-i='3']")
    page.wait_for_selector("#share:not([hidden])")
    link = page.get_attribute("#share", "data-url")
    assert link is not None and "/?watch=" in link
    joined_at = token_count(page)
    second_tab.page.goto(link)
    still_running = page.get_attribute("body", "data-phase") == "running"
    second_tab.page.wait_for_selector("#report .tok")
    shoot(second_tab.page, "06_watcher_mid_stream")
    wait_phase(page, "ended")
    wait_phase(second_tab.page, "ended")
    assert still_running, f"the session ended before the watcher joined (at token {joined_at})"
    assert report_text(second_tab.page) == report_text(page)
    assert token_count(second_tab.page) == token_count(page)
    assert "watch=" in second_tab.page.url
    assert tab.errors == [] and second_tab.errors == []


def test_the_prompt_preset_chosen_in_the_form_reaches_the_server_and_shows_with_the_session(
    tab: Watched, server: Server, cxr_dir: Path
) -> None:
    page = tab.page
    page.goto(server.url)
    assert page.input_value("#preset") == "medviz"
    assert page.locator("#preset option").evaluate_all("os => os.map(o => o.value)") == ["medviz", "original", "model-card"]
    before = {p.stem for p in server.recordings.glob("*.medviz")}
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=4, record=True, preset="model-card")
    wait_phase(page, "ended")
    (recording,) = {p.stem for p in server.recordings.glob("*.medviz")} - before
    assert recorded(server.recordings / f"{recording}.medviz")[0].preset == "model-card"
    assert page.inner_text("#session-info") == "tiny · prompt model-card · full report"
    assert tab.errors == []


def test_a_file_that_is_not_an_image_gets_a_plain_error(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "labels.csv", max_tokens=8)
    page.wait_for_selector("#banner:not([hidden])")
    shoot(page, "07_bad_image")
    assert page.inner_text("#banner-text").startswith("The image could not be read.")
    assert page.get_attribute("body", "data-phase") == "closed"
    assert tab.errors == []


@pytest.mark.parametrize("temperature", ["0.001", "2.5"])
def test_a_temperature_the_server_would_refuse_is_said_in_the_form_before_anything_is_sent(
        tab: Watched, server: Server, cxr_dir: Path, temperature: str) -> None:
    page = tab.page
    page.goto(server.url)
    page.set_input_files("#file", str(cxr_dir / "nih_00000001_000.png"))
    page.fill("#temperature", temperature)
    page.click("#start")
    page.wait_for_selector("#banner:not([hidden])")
    assert page.inner_text("#banner-text") == "Temperature must be 0 (deterministic) or between 0.01 and 2."
    assert page.get_attribute("body", "data-phase") == "idle" and tab.errors == []


def test_stop_ends_a_running_session_early_and_keeps_what_was_written(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=LONG_RUN)
    page.wait_for_function("() => document.querySelectorAll('#report .tok').length >= 3")
    assert page.is_enabled("#stop")
    page.click("#stop")
    wait_phase(page, "ended")
    shoot(page, "05_stopped")
    status = page.inner_text("#status")
    assert status.startswith("Done · stopped · ")
    written = token_count(page)
    assert 3 <= written < LONG_RUN
    assert f" {written} tokens in " in status
    assert not page.is_enabled("#stop") and page.is_enabled("#start")
    assert tab.errors == []


def cut_after(frames_seen: int, code: int) -> Any:
    """A route for the page's /ws/session: the real server's frames pass until `frames_seen`, then
    the page's side closes with `code` (the server's side stays open, as a dropped link leaves it:
    Playwright would forward the page's close to the server, a deliberate leave that stops the
    session at once, unless the route handles the page's close itself). Only the first socket is
    cut; the page's rejoin passes untouched."""
    sockets = [0]

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        sockets[0] += 1
        seen = [0 if sockets[0] == 1 else -(10**9)]
        ws.on_close(lambda code, reason: None)  # the page's side closing leaves the server's side open

        def to_page(message: Any) -> None:
            seen[0] += 1
            if seen[0] <= frames_seen:
                ws.send(message)
            if seen[0] == frames_seen:
                ws.close(code=code, reason="viewer fell 256 frames behind; reconnect to catch up from the session log")

        server.on_message(to_page)
        ws.on_message(lambda message: server.send(message))

    return route


@pytest.mark.parametrize("code", [4008, 1006], ids=["fell-behind", "link-lost"])
def test_a_live_page_dropped_or_cut_off_rejoins_as_owner_from_the_log_and_ends_with_the_whole_report(
    tab: Watched, server: Server, cxr_dir: Path, code: int
) -> None:
    page = tab.page
    page.route_web_socket(re.compile(r"/ws/session\b"), cut_after(6, code))
    start_session(page, server.url, cxr_dir / "nih_00000001_000.png", max_tokens=40, record=True)
    wait_phase(page, "ended")
    assert "watch=" not in page.url  # back as its owner (with its key), not as a watcher
    assert token_count(page) == 40 and page.inner_text("#status").startswith("Done")
    assert tab.errors == []
