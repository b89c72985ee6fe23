"""What a token read, in the real browser against `medviz serve --model tiny`: pinning a
token marks exactly the words of its step's context (in the report and in the prompt
view, where each image is one chip), draws links to them weighted by value, shows the
attention sink in the statistics, and the toggle takes the links away and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import record_session, recorded

PIN = 7

READ = """() => [...document.querySelectorAll('#reading .read')].map((e) => [
  e.classList.contains('ptok') ? 'prompt' : 'report', Number(e.dataset.pos ?? e.dataset.i), Number(e.dataset.read),
])"""
LINKS = "() => [...document.querySelectorAll('#context-links path.link')].map((p) => [Number(p.dataset.position), p.getAttribute('stroke-width')])"


def expected_reads(path: Path, index: int) -> tuple[dict[tuple[str, int], float], list[tuple[int, float]], float]:
    """From the recording: each word the token read by (place, index) with its value, the links, the sink."""
    start, steps = recorded(path)
    n = len(start.token_ids)
    step = steps[index]
    links = [(link.position, link.value) for link in step.context]
    reads = {("prompt", p) if p < n else ("report", p - n): v for p, v in links}
    return reads, links, step.sink


def pin(page: Any, index: int) -> None:
    page.click(f"#report .tok[data-i='{index}']")
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("() => document.querySelectorAll('#reading .read').length > 0")


def test_a_pinned_token_marks_and_links_exactly_the_words_its_step_read(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    recording = record_session(page, server.url, server.recordings, cxr_dir / "nih_00000001_000.png", max_tokens=12)
    reads, links, sink = expected_reads(server.recordings / f"{recording}.medviz", PIN)
    assert len(links) == 8
    page.click("#prompt-summary")
    assert page.locator("#prompt-text .chip").all_inner_texts() == ["[image]"]
    pin(page, PIN)
    got = {(place, index): value for place, index, value in page.evaluate(READ)}
    assert got == pytest.approx(reads, rel=1e-6)
    page.wait_for_function("() => document.querySelectorAll('#context-links path.link').length > 0")
    drawn = page.evaluate(LINKS)
    strongest = links[0][0]
    assert {position for position, _ in drawn} <= {position for position, _ in links}
    assert [width for position, width in drawn if position == strongest] == ["4.00"]  # 1 + 3 x its weight of 1
    sink_row = page.locator("#stats dt", has_text="Attention sink").locator("xpath=following-sibling::dd[1]").inner_text()
    assert sink_row.endswith("% on <bos>") and float(sink_row.split("%")[0]) == pytest.approx(100 * sink, abs=0.051)
    assert page.locator("#stats dt", has_text="Read most").count() == 1
    shoot(page, "context-links")
    assert tab.errors == []


def test_the_context_toggle_takes_the_links_away_and_brings_them_back(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    record_session(page, server.url, server.recordings, cxr_dir / "nih_00000001_000.png", max_tokens=10)
    pin(page, 5)
    marked = page.locator("#reading .read").count()
    page.uncheck("#context")
    page.wait_for_function("() => document.querySelectorAll('#reading .read').length === 0")
    assert page.locator("#context-links path").count() == 0
    page.check("#context")
    page.wait_for_function(f"() => document.querySelectorAll('#reading .read').length === {marked}")
    assert tab.errors == []
