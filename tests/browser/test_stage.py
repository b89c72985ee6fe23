"""The presenter's stage in the real browser: the stand-in banner wherever a session is shown
(viewer, watcher, replay, Compare), presentation mode at a projector's 1024 x 768, outlines
and peak that follow the method shown (the page's regions by maps/regions.py's definition),
region labels that never overlap, plurals and whitespace tokens made visible."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medviz_core.maps.regions import find_regions, zone_of
from medviz_core.types import STAND_IN_NOTE
from tests.browser.conftest import Server, Watched, open_page, shoot
from tests.browser.pages import record_session, recorded, start_session, wait_phase

IMAGE = "nih_00000001_000.png"


@pytest.fixture(scope="module")
def recording(browser: Any, server: Server, cxr_dir: Path) -> str:
    """One recorded 16-token session of the tiny stand-in, shared by this module's tests."""
    watched = open_page(browser, server)
    try:
        return record_session(watched.page, server.url, server.recordings, cxr_dir / IMAGE, max_tokens=16)
    finally:
        watched.page.context.close()


@pytest.fixture
def projector(browser: Any, server: Server) -> Iterator[Watched]:
    """A page at a projector's 1024 x 768."""
    watched = open_page(browser, server, 1024, 768)
    try:
        yield watched
    finally:
        watched.page.context.close()


def replay_to_end(page: Any, url: str, recording: str) -> None:
    page.goto(f"{url}/?replay={recording}")
    page.wait_for_selector("#player:not([hidden])")
    page.select_option("#speed", "8")
    wait_phase(page, "ended")


def banner(page: Any) -> str:
    page.wait_for_selector("#model-note:not([hidden])")
    assert page.get_attribute("#model-note", "data-stand-in") == "true"
    text: str = page.inner_text("#model-note")
    return text


def flat(boxes: list[Any]) -> list[float]:
    return [float(v) for b in boxes for v in b]


def box(page: Any, selector: str) -> dict[str, float]:
    rect: dict[str, float] = page.locator(selector).bounding_box()
    return rect


def drawn(page: Any, selector: str = "#stage") -> tuple[list[float], list[dict[str, Any]]]:
    """The X-ray's rectangle on the canvas (CSS px) and the regions outlined over it."""
    page.wait_for_function(f"() => document.querySelector('{selector}').dataset.animating !== 'true'")
    rect = [float(v) for v in page.get_attribute(selector, "data-xray").split(",")]
    regions: list[dict[str, Any]] = page.evaluate(f"() => JSON.parse(document.querySelector('{selector}').dataset.regions)")
    return rect, regions


def test_the_stand_in_banner_shows_in_the_viewer_a_replay_and_compare(tab: Watched, server: Server, recording: str) -> None:
    page = tab.page
    page.goto(server.url)
    assert banner(page) == STAND_IN_NOTE  # before any session: the server's model says
    replay_to_end(page, server.url, recording)
    assert banner(page) == STAND_IN_NOTE
    page.click("#tab-compare")
    page.wait_for_function(f"() => document.querySelector('#compare-a option[value=\"{recording}\"]') !== null")
    page.select_option("#compare-a", recording)
    page.select_option("#compare-b", recording)
    page.click("#compare-load")
    page.wait_for_selector("#compare-note:not([hidden])")
    assert page.get_attribute("#compare-note", "data-stand-in") == "true"
    assert page.inner_text("#compare-note") == STAND_IN_NOTE
    assert tab.errors == []


def test_a_watcher_sees_the_stand_in_banner(tab: Watched, second_tab: Watched, server: Server, cxr_dir: Path) -> None:
    owner = tab.page
    start_session(owner, server.url, cxr_dir / IMAGE, max_tokens=300)
    owner.wait_for_selector("#share:not([hidden])")
    link = owner.get_attribute("#share", "data-url")
    assert link is not None
    watcher = second_tab.page
    watcher.goto(link)
    watcher.wait_for_selector("#report .tok")
    assert watcher.evaluate("async () => (await import('/js/page.js')).store.state.start.model.standIn") is True
    assert banner(watcher) == STAND_IN_NOTE
    owner.click("#stop")
    wait_phase(owner, "ended")
    assert tab.errors == [] and second_tab.errors == []


def test_presentation_mode_at_1024x768_gives_the_xray_most_of_the_height_and_the_seek_bar_room(
        projector: Watched, server: Server, recording: str) -> None:
    page = projector.page
    replay_to_end(page, server.url, recording)
    assert box(page, "#seek")["width"] >= 300  # the normal layout at 1024 x 768 too
    page.keyboard.press("p")
    page.wait_for_selector("body[data-present='true']")
    page.wait_for_selector(".sidebar", state="hidden")
    assert page.locator(".topbar").is_hidden() and page.locator("#methods-grid").is_hidden()
    rect, _ = drawn(page)
    assert rect[3] >= 0.6 * 768, rect
    assert box(page, "#seek")["width"] >= 300
    assert banner(page) == STAND_IN_NOTE
    shoot(page, "20_presentation_1024x768")
    page.click("#report .tok[data-i='5']")  # pinning keeps the picture and opens the analysis beside it
    page.wait_for_selector("#detail:not([hidden])")
    rect, _ = drawn(page)
    detail = box(page, "#detail")
    stage = box(page, "#stage")
    assert stage["x"] + stage["width"] <= detail["x"] + 1
    assert rect[2] >= 0.4 * 1024 and rect[3] >= 0.5 * 768, rect
    assert min(page.locator("#detail-tiles .tile").first.bounding_box()["width"], 10_000) >= 200
    shoot(page, "21_presentation_pinned_1024x768")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    page.wait_for_selector("body[data-present='false']")
    assert projector.errors == []


def test_with_rollout_shown_the_outlines_peak_and_caption_are_rollouts(tab: Watched, server: Server, recording: str) -> None:
    start, steps = recorded(server.recordings / f"{recording}.medviz")
    size, grid = start.images[0].size, start.model.grid
    own = [find_regions(s.images[0].values("rollout", grid), size) for s in steps]
    token = next(i for i, s in enumerate(steps) if [r.box for r in own[i]] != [r.box for r in s.images[0].stats.regions])
    page = tab.page
    replay_to_end(page, server.url, recording)
    page.select_option("#method", "rollout")
    page.click(f"#report .tok[data-i='{token}']")
    page.wait_for_function(f"() => document.getElementById('stage').dataset.step === '{token}'")
    assert page.get_attribute("#stage", "data-method") == "rollout"
    _, outlined = drawn(page)
    assert [r["zone"] for r in outlined] == [r.zone for r in own[token]]
    assert flat([r["box"] for r in outlined]) == pytest.approx(flat([r.box for r in own[token]]), abs=1e-9)
    assert [r["mass"] for r in outlined] == pytest.approx([r.mass for r in own[token]], abs=1e-3)
    rollout = steps[token].images[0].values("rollout", grid)
    row, col = np.unravel_index(int(np.argmax(rollout)), rollout.shape)
    peak = zone_of((col + 0.5) / grid[1], (row + 0.5) / grid[0])
    assert f" · Rollout · peak {peak} · " in page.inner_text("#caption")
    lo, hi = page.inner_text("#legend-lo"), page.inner_text("#legend-hi")
    shown = steps[token].images[0].maps["rollout"]  # rollout's ~1e-3 values as they are, not 1.19e-3
    assert "e" not in lo + hi and float(lo) == pytest.approx(shown.lo, abs=1e-5) and float(hi) == pytest.approx(shown.hi, abs=1e-5)
    assert tab.errors == []


def test_the_pages_regions_of_consensus_are_the_servers_by_the_same_definition(tab: Watched, server: Server, recording: str) -> None:
    """Exact on the values the page receives (boxes, zones; masses to 1e-3). The step's own
    regions were found before its maps were quantised to 8 bits for the wire, so near-ties
    can differ there: at least 90% of the steps agree on every zone, in order."""
    start, steps = recorded(server.recordings / f"{recording}.medviz")
    size, grid = start.images[0].size, start.model.grid
    page = tab.page
    replay_to_end(page, server.url, recording)
    pages = page.evaluate("""async () => {
      const { store } = await import('/js/page.js');
      const { mapStats } = await import('/js/draw/regions.js');
      const s = store.state;
      return s.steps.map((st) => mapStats(st.images[0].maps.consensus, s.start.model.grid, [s.start.images[0].width, s.start.images[0].height]))
        .map((m) => ({ peak: m.peak, regions: m.regions.map((r) => ({ box: r.box, zone: r.zone, mass: r.mass })) }));
    }""")
    assert len(pages) == len(steps)
    same_as_step = 0
    for step, mine in zip(steps, pages):
        block = step.images[0]
        python = find_regions(block.values("consensus", grid), size)
        assert [r["zone"] for r in mine["regions"]] == [r.zone for r in python]
        assert flat([r["box"] for r in mine["regions"]]) == pytest.approx(flat([r.box for r in python]), abs=1e-9)
        assert [r["mass"] for r in mine["regions"]] == pytest.approx([r.mass for r in python], abs=1e-3)
        assert tuple(mine["peak"]) == block.stats.peak
        same_as_step += [r["zone"] for r in mine["regions"]] == [r.zone for r in block.stats.regions]
    assert same_as_step >= 0.9 * len(steps)


LABEL_BOXES = "() => Array.from(document.querySelectorAll('.pane .region-label')).map((e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"


def test_region_labels_never_overlap_for_any_token_or_method(tab: Watched, server: Server, recording: str) -> None:
    page = tab.page
    replay_to_end(page, server.url, recording)
    checked = 0
    for method in ("consensus", "rollout", "raw"):
        page.select_option("#method", method)
        for i in range(16):
            page.evaluate(f"async () => (await import('/js/page.js')).store.set({{ pinned: {i} }})")
            page.wait_for_function(f"() => document.getElementById('stage').dataset.step === '{i}'")
            drawn(page)
            boxes = page.evaluate(LABEL_BOXES)
            checked += len(boxes)
            for a in range(len(boxes)):
                for b in range(a + 1, len(boxes)):
                    (l1, t1, r1, b1), (l2, t2, r2, b2) = boxes[a], boxes[b]
                    assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, (method, i, boxes[a], boxes[b])
    assert checked >= 16  # labels were there to check
    assert tab.errors == []


def test_one_token_is_one_token_and_whitespace_tokens_show_as_marks(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    start_session(page, server.url, cxr_dir / IMAGE, max_tokens=1)
    wait_phase(page, "ended")
    assert page.inner_text("#progress") == "1 token"
    assert " · 1 token in " in page.inner_text("#status")
    marks = page.evaluate("""async () => {
      const { legendEnds, plural, visibleToken } = await import('/js/format.js');
      const { renderReport } = await import('/js/views/panels.js');
      const el = document.createElement('div');
      el.className = 'report';
      document.body.append(el);
      const step = (i, text) => ({ i, text, special: false, mass: 0.5, images: [{ zone: 'central middle' }] });
      renderReport(el, [step(0, 'The'), step(1, '\\n\\n'), step(2, '  '), step(3, ' lungs')], 3, null, false);
      const before = (k) => getComputedStyle(el.children[k], '::before').content;
      const out = { visible: ['\\n\\n', '  ', ' lungs', 'a\\nb'].map(visibleToken), marks: [before(1), before(2), before(3)], text: el.textContent,
        legends: [legendEnds(3.17e-7, 1.15e-5), legendEnds(0.002, 0.0123), legendEnds(0.1, 0.7)], plurals: [plural(1, 'token'), plural(2, 'token'), plural(0, 'image')] };
      el.remove();
      return out;
    }""")
    assert marks["visible"] == ["↵↵", "··", " lungs", "a↵b"]
    assert marks["marks"] == ['"↵"', '"·"', "none"]
    assert marks["text"] == "The\n\n   lungs"  # the marks are not part of the report's text
    assert marks["legends"] == [["0.03", "1.15 ×10⁻⁵"], ["0.0020", "0.0123"], ["0.100", "0.700"]]  # one unit, no 3.17e-7
    assert marks["plurals"] == ["1 token", "2 tokens", "0 images"]
    assert tab.errors == []
