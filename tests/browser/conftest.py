"""Fixtures for the real-browser tests: one `medviz serve --model tiny` on a free loopback
port (without --token: its pages carry the token of the link it printed as their cookie),
Debian's headless Chromium driven by Playwright, pages that record console errors,
and a screenshot helper writing to test-artifacts/screenshots/.

Nothing here downloads a browser or touches the network beyond 127.0.0.1: without
/usr/bin/chromium (or Playwright's Python package) every browser test is skipped with
the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server.guard.security import COOKIE
from tests.server.serve_process import link_token, serve_process

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@dataclass(frozen=True)
class Server:
    url: str
    recordings: Path
    token: str  # the one of the link it printed (a token-less start's own): the pages carry it as their cookie

    @property
    def link(self) -> str:
        """The address `medviz serve` printed: the page with the token, which the page keeps in its links."""
        return f"{self.url}/?token={self.token}"


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `medviz serve --model tiny` on 127.0.0.1 without --token, its recordings in a temporary folder."""
    root = tmp_path_factory.mktemp("serve")
    recordings = root / "recordings"
    recordings.mkdir()
    options = ["--model", "tiny", "--host", "127.0.0.1", "--recordings", str(recordings)]
    with serve_process(options, root / "server.log") as (port, line):
        yield Server(url=f"http://127.0.0.1:{port}", recordings=recordings, token=link_token(line))


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium); not found")
    if shutil.which("chromium") is None and not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not executable")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright's Python package")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """A page and every console error / uncaught exception it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)


def open_page(browser: Any, server: Server, width: int = 1280, height: int = 800) -> Watched:
    """A page in a new context holding the server's cookie, as after opening the link `medviz serve` printed."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.add_cookies([{"name": COOKIE, "value": server.token, "url": server.url, "httpOnly": True,
                          "sameSite": "Strict"}])
    watched = Watched(page=context.new_page())

    def console(message: Any) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text}")

    watched.page.on("console", console)
    watched.page.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
    return watched


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Watched]:
    """A fresh 1280 x 800 page in its own context."""
    watched = open_page(browser, server)
    try:
        yield watched
    finally:
        watched.page.context.close()


@pytest.fixture
def second_tab(browser: Any, server: Server) -> Iterator[Watched]:
    """Another page in another context: a second person watching."""
    watched = open_page(browser, server)
    try:
        yield watched
    finally:
        watched.page.context.close()


def shoot(page: Any, name: str) -> Path:
    """Save a screenshot of the state the test has reached."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
