"""Run the server on a free loopback port in a background thread (tests, benchmarks, notebooks).

Owns: `serve_in_background`, a context manager yielding the bound port of a real uvicorn
server (the socket is bound before uvicorn starts, so there is no port race), configured
as `medviz serve` configures it (uvicorn_config.py: the same HTTP limits and logging),
stopped cleanly on exit; `background_server` yields the app too (tests read its state:
sessions, worker, budgets). Does not own the app (app.py) or its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import IO

import uvicorn
from starlette.applications import Starlette

from medviz_core.engine.api import StreamEngine
from server.app import create_app
from server.settings import Settings
from server.uvicorn_config import server_config


@contextlib.contextmanager
def serve_in_background(settings: Settings, engine: StreamEngine | None = None,
                        start_timeout: float = 60.0) -> Iterator[int]:
    """Yield the port of a running server for `settings` (host forced to 127.0.0.1)."""
    with background_server(settings, engine, start_timeout) as (_, port):
        yield port


@contextlib.contextmanager
def background_server(settings: Settings, engine: StreamEngine | None = None, start_timeout: float = 60.0,
                      log_level: str = "warning", log_stream: IO[str] | None = None) -> Iterator[tuple[Starlette, int]]:
    """Yield (app, port) of a running server for `settings` (host forced to 127.0.0.1); `log_stream`
    receives uvicorn's log lines (access lines too, at log_level info)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    settings = dataclasses.replace(settings, host="127.0.0.1", port=port)
    app = create_app(settings, engine=engine)
    config = server_config(app, settings, log_level=log_level, access_log=log_level == "info", log_stream=log_stream)
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
        yield app, port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
