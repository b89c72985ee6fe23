"""The operator's link never stays in the address bar or the history: a page GET carrying ?pacs_key= is answered
with a 303 to the same address without it, with the PACS key's cookie (and the token's) set; the page then loads
from the cookies. API routes and websockets still take ?pacs_key= as it is (tools)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from server.guard.security import COOKIE, PACS_COOKIE
from server.pacs.config import PacsConfig
from tests.server.helpers import LiveServer

TOKEN = "token-of-the-operators-link-7"
PACS_KEY = "pacs-key-of-the-link-tests-01"


def _server(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server(token=TOKEN, pacs=PacsConfig("http://127.0.0.1:9/dicom-web"), pacs_key=PACS_KEY)


def test_the_operators_link_is_a_303_to_itself_without_the_pacs_key_that_sets_both_cookies(
        make_server: Callable[..., LiveServer]) -> None:
    server = _server(make_server)
    with httpx.Client(base_url=server.http) as browser:
        link = browser.get(f"/?token={TOKEN}&pacs_key={PACS_KEY}&replay=rec-1")
        assert (link.status_code, link.headers["location"]) == (303, f"/?token={TOKEN}&replay=rec-1")
        assert sorted(link.headers.get_list("set-cookie")) == [
            f"{PACS_COOKIE}={PACS_KEY}; HttpOnly; SameSite=Strict; Path=/",
            f"{COOKIE}={TOKEN}; HttpOnly; SameSite=Strict; Path=/"]
        assert PACS_KEY not in link.text
        page = browser.get(link.headers["location"])
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert browser.get("/api/pacs").json()["allowed"] is True  # the cookie opens the PACS


def test_a_wrong_pacs_key_in_a_page_link_is_taken_off_too_and_sets_no_pacs_cookie(
        make_server: Callable[..., LiveServer]) -> None:
    link = httpx.get(f"{_server(make_server).http}/index.html?pacs_key=not-the-key-000000&token={TOKEN}")
    assert (link.status_code, link.headers["location"]) == (303, f"/index.html?token={TOKEN}")
    assert [c for c in link.headers.get_list("set-cookie") if c.startswith(PACS_COOKIE)] == []


def test_api_routes_and_a_link_without_the_key_are_answered_as_they_are(
        make_server: Callable[..., LiveServer]) -> None:
    server = _server(make_server)
    api = httpx.get(f"{server.http}/api/pacs?token={TOKEN}&pacs_key={PACS_KEY}")
    assert (api.status_code, api.json()["allowed"]) == (200, True)
    assert httpx.get(f"{server.http}/?token={TOKEN}").status_code == 200
