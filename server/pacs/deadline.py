"""The whole-exchange deadline of one PACS request: `total_timeout_s` as a watchdog, not a check between reads.

Owns: `Deadline`, a context manager that learns the exchange's socket through httpcore's documented `trace`
request extension (the `connection.connect_tcp.complete` event) and, when the deadline passes first, shuts that
socket down from a timer thread. It keeps its own duplicate of the socket's file descriptor (`os.dup`): for an
https:// PACS, httpcore hands the connected socket to `ssl.wrap_socket`, which detaches it, so the socket object
the event named no longer holds a descriptor; the duplicate still names the same connection, and shutting it down
ends a TLS handshake that trickles in as surely as a status line, headers or a body that trickle, each read within
the read timeout. `fired` then tells the caller that the error it sees (a read error, a failed handshake, a short
body) is the deadline's. The client opens one connection per exchange (no keep-alive) so that every exchange's
socket is seen. Does not own the exchange nor its error messages (client.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from types import TracebackType
from typing import Any

CONNECTED = "connection.connect_tcp.complete"


class Deadline:
    """`with Deadline(seconds) as deadline:` around one exchange whose request carries
    `extensions={"trace": deadline.trace}`; `deadline.fired` once the seconds have passed."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None  # a duplicate of the connection's descriptor, owned here
        self._done = False
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.finish()

    def finish(self) -> None:
        """The exchange is over (call before its connection is closed): the timer shuts nothing down after this,
        and the duplicate descriptor is closed."""
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._keep(None)

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: keeps a duplicate of the socket of each connection the exchange opens."""
        if event != CONNECTED:
            return
        stream = info.get("return_value")
        found = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(found, socket.socket) or found.fileno() < 0:
            return
        with self._lock:
            if self._done:
                return
            self._keep(socket.socket(fileno=os.dup(found.fileno())))
            if self.fired and self._socket is not None:
                _shut(self._socket)

    def _keep(self, duplicate: socket.socket | None) -> None:
        """Hold `duplicate` (under the lock), closing the one held before."""
        if self._socket is not None:
            self._socket.close()
        self._socket = duplicate

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._socket is not None:
                _shut(self._socket)


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
