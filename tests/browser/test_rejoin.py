"""A reload does not end a live demo: the page that started a session takes it back as its owner
with the key it kept in sessionStorage, catches up from the session log, ends with every token,
and Stop still works; a key the server refuses leaves a fresh page that says why."""

from __future__ import annotations

from pathlib import Path

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import recorded, report_text, start_session, token_count, wait_phase

IMAGE = "nih_00000001_000.png"
AT_LEAST_3 = "() => document.querySelectorAll('#report .tok').length >= 3"


def test_a_reload_mid_session_rejoins_as_owner_and_the_session_ends_with_every_token(
        tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    before = {p.stem for p in server.recordings.glob("*.medviz")}
    start_session(page, server.url, cxr_dir / IMAGE, max_tokens=60, record=True)
    page.wait_for_function(AT_LEAST_3)
    page.reload()
    wait_phase(page, "ended")
    shoot(page, "rejoin_01_after_reload")
    (recording,) = {p.stem for p in server.recordings.glob("*.medviz")} - before
    _, steps = recorded(server.recordings / f"{recording}.medviz")
    assert token_count(page) == 60 == len(steps)
    shown = page.locator("#report .tok").evaluate_all("ts => ts.map(t => Number(t.dataset.i))")
    assert shown == list(range(60)) and report_text(page) != ""
    assert page.inner_text("#status").startswith("Done")
    assert "watch=" not in page.url
    assert page.evaluate("() => sessionStorage.getItem('medviz.owner')") is None  # ended: nothing to rejoin
    assert tab.errors == []


def test_stop_works_after_a_reload(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / IMAGE, max_tokens=300)
    page.wait_for_function(AT_LEAST_3)
    page.reload()
    page.wait_for_function(AT_LEAST_3)
    assert page.is_enabled("#stop")
    page.click("#stop")
    wait_phase(page, "ended")
    assert page.inner_text("#status").startswith("Done · stopped · ")
    assert 3 <= token_count(page) < 300
    assert tab.errors == []


def test_a_key_the_server_refuses_leaves_a_fresh_page_that_says_why(tab: Watched, server: Server) -> None:
    page = tab.page
    page.goto(server.url)
    page.evaluate("() => sessionStorage.setItem('medviz.owner', JSON.stringify({session: 'gone', key: 'nope'}))")
    page.reload()
    page.wait_for_selector("#banner:not([hidden])")
    assert "cannot rejoin session 'gone' as its owner: it does not exist or has expired" in page.inner_text("#banner-text")
    assert page.get_attribute("body", "data-phase") == "idle"
    assert page.evaluate("() => sessionStorage.getItem('medviz.owner')") is None
    assert not page.is_enabled("#stop")
