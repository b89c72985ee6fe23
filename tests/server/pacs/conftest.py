"""The PACS fixtures of tests/pacs (one real Orthanc per test session, test studies stored into it) for the server's
PACS routes, and a server on the tiny model whose settings name that Orthanc and a PACS key (OPERATOR: its header,
as the operator's link gives it), and a loopback PACS that hangs every exchange until the test releases it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from server.guard.security import PACS_HEADER
from server.pacs.config import PacsConfig
from tests.pacs.conftest import orthanc, pacs_config, sample_dicom, stored_study  # noqa: F401  (fixtures)
from tests.server.helpers import LiveServer

PACS_KEY = "pacs-key-of-the-tests-0123"
OPERATOR = {PACS_HEADER: PACS_KEY}  # what the operator's link gives every request (as a cookie in the browser)


@pytest.fixture
def pacs_server(make_server: Callable[..., LiveServer], pacs_config: PacsConfig) -> Callable[..., LiveServer]:  # noqa: F811
    """A server on the tiny model with the test Orthanc as its PACS and PACS_KEY (settings overrides as keywords)."""

    def start(**overrides: Any) -> LiveServer:
        return make_server(**{"pacs": pacs_config, "pacs_key": PACS_KEY, **overrides})

    return start


@dataclass
class BlockingPacs:
    """A DICOMweb root on 127.0.0.1 whose every request waits until `release()` (at most 30 s), then answers 404;
    `arrived`: requests that reached it, `peak`: the most it held at once."""

    url: str
    released: threading.Event
    arrived: int = 0
    peak: int = 0
    held: int = 0

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def blocking_pacs() -> Iterator[BlockingPacs]:
    """A PACS that hangs every exchange until the test releases it (stopped, and released, after the test)."""
    lock = threading.Lock()
    pacs = BlockingPacs(url="", released=threading.Event())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                pacs.arrived += 1
                pacs.held += 1
                pacs.peak = max(pacs.peak, pacs.held)
            pacs.released.wait(30)
            with lock:
                pacs.held -= 1
            with contextlib.suppress(ConnectionError):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pacs.url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    try:
        yield pacs
    finally:
        pacs.release()
        server.shutdown()
        server.server_close()
