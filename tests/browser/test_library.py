"""The recordings list tells sessions apart (thumbnail, image labels, question or preset, model, how
each ended: complete, stopped, cut short); a replay resets the sidebar to the replayed study; the
Share link of a live session and of a finished recorded one is one `medviz watch` follows as copied."""

from __future__ import annotations

import io
from pathlib import Path

from medviz_core.recording.file import RecordingWriter, iter_frames
from medviz_core.wire.server_frames import EndFrame
from server.cli import watch as client
from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import start_session, start_study, token_count, wait_phase

PAIR = ["nih_00000001_000.png", "nih_00000003_001.png"]
AT_LEAST_3 = "() => document.querySelectorAll('#report .tok').length >= 3"


def new_recording(server: Server, before: set[str]) -> str:
    (made,) = {p.stem for p in server.recordings.glob("*.medviz")} - before
    return made


def test_the_recordings_list_shows_names_model_and_how_each_session_ended(
        tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    before = {p.stem for p in server.recordings.glob("*.medviz")}
    start_study(page, server.url, [cxr_dir / n for n in PAIR], ["PA", "lateral"], max_tokens=4, record=True)
    wait_phase(page, "ended")
    normal = new_recording(server, before)
    start_session(page, server.url, cxr_dir / PAIR[0], max_tokens=300, record=True)
    page.wait_for_function(AT_LEAST_3)
    page.click("#stop")
    wait_phase(page, "ended")
    stopped = new_recording(server, before | {normal})
    with RecordingWriter(server.recordings / "cut_short.medviz") as writer:  # as a server killed mid-session leaves it
        for recorded in iter_frames(server.recordings / f"{normal}.medviz"):
            if recorded.frame.type != "end":
                writer.write(recorded.data)

    page.click("#tab-library")
    page.wait_for_selector(f"#library-list .rec[data-id='{normal}'] img.rec-thumb")
    rows = {rec: page.locator(f"#library-list .rec[data-id='{rec}']") for rec in (normal, stopped, "cut_short")}
    page.wait_for_function("() => [...document.querySelectorAll('#library-list img.rec-thumb')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    shoot(page, "library_01_endings")
    assert {rec: row.get_attribute("data-ending") for rec, row in rows.items()} == {
        normal: "ended", stopped: "stopped", "cut_short": "cut"}
    assert [rows[rec].locator(".rec-end").inner_text() for rec in (normal, stopped, "cut_short")] == [
        "complete", "stopped", "cut short"]
    assert rows[normal].locator(".rec-what").inner_text() == "PA + lateral · tiny"
    assert rows[stopped].locator(".rec-what").inner_text() == "1 image · tiny"
    assert rows[normal].locator("strong").inner_text() == "Full report"

    rows[normal].locator("button.primary").click()
    page.wait_for_selector("#player:not([hidden])")
    page.wait_for_selector("#files li:nth-child(2)")
    assert page.locator("#files input.label").evaluate_all("ls => ls.map(l => l.value)") == ["PA", "lateral"]
    assert not page.is_enabled("#stop")
    assert f"replay={normal}" in (page.get_attribute("#share", "data-url") or "")
    assert page.is_visible("#share")
    assert tab.errors == []


def test_medviz_watch_follows_the_share_link_of_a_live_and_of_a_finished_recorded_session(
        tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.link, cxr_dir / PAIR[0], max_tokens=40, record=True)  # opened from the printed link
    page.wait_for_selector("#share:not([hidden])")
    live_link = page.get_attribute("#share", "data-url") or ""
    live_out, notes = io.StringIO(), io.StringIO()
    live_end = client.watch(live_link, live_out, notes)
    wait_phase(page, "ended")
    page.wait_for_selector("#share[data-url*='replay=']")
    replay_link = page.get_attribute("#share", "data-url") or ""
    replay_out = io.StringIO()
    replay_end = client.watch(replay_link, replay_out, io.StringIO())
    assert live_link.startswith(f"{server.link}&watch=") and replay_link.startswith(f"{server.link}&replay=")
    assert isinstance(live_end, EndFrame) and isinstance(replay_end, EndFrame)
    assert live_end.tokens == replay_end.tokens == token_count(page) == 40
    assert replay_out.getvalue() == live_out.getvalue() != ""
    assert tab.errors == []
