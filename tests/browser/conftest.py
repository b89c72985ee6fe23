"""Fixtures for the real-browser tests: one `medviz serve --model tiny` on a free loopback
port, Debian's headless Chromium driven by Playwright, pages that record console errors,
and a screenshot helper writing to test-artifacts/screenshots/.

Nothing here downloads a browser or touches the network beyond 127.0.0.1: without
/usr/bin/chromium (or Playwright's Python package) every browser test is skipped with
the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
SERVER_START_S = 180.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"medviz serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as res:
                health: dict[str, Any] = json.loads(res.read())
                return health
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise RuntimeError(f"medviz serve did not answer /api/health within {SERVER_START_S:.0f} s:\n{log.read_text()[-3000:]}")


def serve_command(port: int, recordings: Path) -> list[str]:
    """`medviz serve` through this interpreter, so no virtualenv layout is assumed."""
    return [sys.executable, "-m", "server.cli", "serve", "--model", "tiny", "--host", "127.0.0.1",
            "--port", str(port), "--recordings", str(recordings)]


@dataclass(frozen=True)
class Server:
    url: str
    recordings: Path


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `medviz serve --model tiny` on 127.0.0.1, its recordings in a temporary folder."""
    port = _free_port()
    root = tmp_path_factory.mktemp("serve")
    recordings = root / "recordings"
    recordings.mkdir()
    log = root / "server.log"
    command = serve_command(port, recordings)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield Server(url=url, recordings=recordings)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def open_page(browser: Any, width: int = 1280, height: int = 800) -> Watched:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    watched = Watched(page=context.new_page())
    watched.page.on("console", lambda m: m.type == "error" and watched.errors.append(f"console: {m.text}"))
    watched.page.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
    return watched


@pytest.fixture
def tab(browser: Any) -> Iterator[Watched]:
    """A fresh 1280 x 800 page in its own context."""
    watched = open_page(browser)
    try:
        yield watched
    finally:
        watched.page.context.close()


@pytest.fixture
def second_tab(browser: Any) -> Iterator[Watched]:
    """Another page in another context: a second person watching."""
    watched = open_page(browser)
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
