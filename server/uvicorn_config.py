"""The uvicorn server the app runs in, with the HTTP limits of Settings: one place for `serve` and tests.

Owns: `server_config` (uvicorn.Config with h11 and its request-head limit, a deadline for
the request head, the connection cap, the keep-alive timeout, websocket frame limits and
the redacting logging of guard/log_redaction.py: tokens, PACS keys, PACS queries),
`AnnouncingServer` (uvicorn's server, telling its caller once its sockets accept connections) and
`HeaderDeadlineH11`, uvicorn's h11 protocol with one addition: a connection that has not sent a whole request head
within `header_timeout_s` of connecting (or of starting its next request) is closed, so slow
headers cannot hold connections. Does not own the app (app.py) or what it serves.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import IO, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.guard.log_redaction import log_config
from server.settings import Settings

log = logging.getLogger("medviz.server")


class MedvizConfig(uvicorn.Config):
    """uvicorn.Config that also carries the request-head deadline to the protocol."""

    def __init__(self, app: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s


class AnnouncingServer(uvicorn.Server):
    """uvicorn.Server that calls `ready()` once it accepts connections: after the lifespan (which loads
    the model) and the bind, never before (a failed start calls nothing)."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._ready()


class HeaderDeadlineH11(H11Protocol):
    """h11 with a deadline for each request head (uvicorn has none: it waits for headers forever)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # a request head still incomplete (or the next one started)
        else:
            self._disarm()  # the head is whole (or the connection was handed to the websocket protocol)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            timeout = float(getattr(self.config, "header_timeout_s", 10.0))
            self._deadline = self.loop.call_later(timeout, self._expire, timeout)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, timeout: float) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closed a connection that sent no whole request head within %g s", timeout)
            self.transport.close()


def server_config(app: Any, settings: Settings, *, log_level: str = "info", access_log: bool = True,
                  log_stream: IO[str] | None = None) -> uvicorn.Config:
    """The uvicorn configuration for `app` under `settings` (host, port and every HTTP limit)."""
    return MedvizConfig(
        app, settings.header_timeout_s, host=settings.host, port=settings.port,
        http=HeaderDeadlineH11, h11_max_incomplete_event_size=settings.max_header_bytes,
        limit_concurrency=settings.max_connections, timeout_keep_alive=settings.keep_alive_s,
        # No per-message deflate: frames are PNG and uint8 maps (barely compressible), and
        # deflating the same bytes once per viewer would cost the model's CPU.
        ws_max_size=settings.ws_max_size, ws_per_message_deflate=False,
        log_config=log_config((settings.token, settings.pacs_key), log_stream), log_level=log_level,
        access_log=access_log,
        lifespan="on",
    )
