"""The whole-exchange deadline of one PACS request: `total_timeout_s` as a watchdog, not a check between reads.

Owns: `Deadline`, a context manager that learns the exchange's socket through httpcore's documented `trace`
request extension (the `connection.connect_tcp.complete` and `connection.start_tls.complete` events) and, when the
deadline passes first, shuts that socket down from a timer thread. A PACS that trickles its status line or headers a
byte at a time, each read within the read timeout, is thereby cut off at the deadline as surely as one that trickles
its body; `fired` then tells the caller that the error it sees (a read error, a short body) is the deadline's.
The client opens one connection per exchange (no keep-alive) so that every exchange's socket is seen. Does not own
the exchange nor its error messages (client.py).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

CONNECTED = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class Deadline:
    """`with Deadline(seconds) as deadline:` around one exchange whose request carries
    `extensions={"trace": deadline.trace}`; `deadline.fired` once the seconds have passed."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
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
        """The exchange is over (call before its connection is closed): the timer shuts nothing down after this."""
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._socket = None

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: keeps the socket of each connection the exchange opens."""
        if event not in CONNECTED:
            return
        stream = info.get("return_value")
        found = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            if self._done or not isinstance(found, socket.socket):
                return
            self._socket = found
            if self.fired:
                _shut(found)

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
