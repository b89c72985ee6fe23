"""Run the server on a free loopback port in a background thread (tests, benchmarks, notebooks).

Owns: `serve_in_background`, a context manager yielding the bound port of a real uvicorn
server (the socket is bound before uvicorn starts, so there is no port race), stopped
cleanly on exit. Does not own the app (app.py) or its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from typing import Any, Iterator

import uvicorn

from .app import create_app
from .settings import Settings


@contextlib.contextmanager
def serve_in_background(settings: Settings, engine: Any = None, start_timeout: float = 60.0) -> Iterator[int]:
    """Yield the port of a running server for `settings` (host forced to 127.0.0.1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    settings = dataclasses.replace(settings, host="127.0.0.1", port=port)
    config = uvicorn.Config(create_app(settings, engine=engine), log_level="warning",
                            ws_max_size=settings.ws_max_size, ws_per_message_deflate=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="medviz-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the background server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
