"""The page under its security headers, in the real browser against a token-less `medviz serve --model
tiny`: opened from the link the server printed, it runs a recorded session, shows the recordings
list with its thumbnails and the analysis panel with no Content-Security-Policy violation; a
browser without the link gets 401."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.guard.headers import CONTENT_SECURITY_POLICY
from tests.browser.conftest import Server, Watched
from tests.browser.pages import start_session, wait_phase

VIOLATIONS = """() => {
  window.cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`));
}"""


@pytest.fixture
def bare(browser: Any) -> Iterator[Watched]:
    """A page in a context with no cookie: someone who has only the address, not the printed link."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    watched = Watched(page=context.new_page())
    watched.page.on("console", lambda m: watched.errors.append(f"console: {m.text}") if m.type == "error" else None)
    watched.page.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
    try:
        yield watched
    finally:
        context.close()


def test_the_page_opened_from_the_printed_link_works_under_its_csp(bare: Watched, server: Server, cxr_dir: Path) -> None:
    page = bare.page
    page.add_init_script(f"({VIOLATIONS})()")
    response = page.goto(server.link)
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert (response.headers["x-frame-options"], response.headers["referrer-policy"]) == ("DENY", "no-referrer")
    start_session(page, server.link, cxr_dir / "nih_00000001_000.png", max_tokens=6, record=True)
    wait_phase(page, "ended")
    page.locator("#report .tok").nth(2).dispatch_event("click")  # the analysis panel of a pinned token
    page.wait_for_selector("#detail:not([hidden])")
    page.click("#tab-library")  # thumbnails: images from /api
    page.wait_for_function("() => [...document.querySelectorAll('#library-list img.rec-thumb')]"
                           ".some(i => i.complete && i.naturalWidth > 0)")
    assert page.evaluate("() => window.cspViolations") == []
    assert bare.errors == []
    assert page.evaluate("() => document.cookie") == ""  # the token's cookie is HttpOnly


def test_a_browser_with_only_the_address_gets_401(bare: Watched, server: Server) -> None:
    response = bare.page.goto(server.url)
    assert response is not None and response.status == 401
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
