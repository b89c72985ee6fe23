"""Helpers for server tests: a real uvicorn server on a free loopback port in a thread, and clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack
from websockets.asyncio.client import ClientConnection, connect

from medviz_core.wire import server_frames as frames
from server.background import background_server
from server.settings import Settings
from tests.wire_client import start_request

T = TypeVar("T")


@dataclass
class LiveServer:
    settings: Settings
    port: int
    app: Any = None  # the Starlette app it runs (its state: sessions, worker, connections)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve(settings: Settings, engine: Any, **options: Any) -> Iterator[LiveServer]:
    with background_server(settings, engine, **options) as (app, port):
        yield LiveServer(settings=settings, port=port, app=app)


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(bounded())


def start_bytes(image: bytes | None, max_new_tokens: int = 4, **fields: Any) -> bytes:
    return start_request(image, max_new_tokens, **fields).to_wire()


async def receive_all(ws: ClientConnection) -> list[bytes]:
    """Every frame until the server closes the connection."""
    out: list[bytes] = []
    with contextlib.suppress(Exception):
        async for message in ws:
            assert isinstance(message, bytes)
            out.append(message)
    return out


def kinds(data: list[bytes]) -> list[str]:
    return [frames.decode(d).type for d in data]


async def session(server: LiveServer, image: bytes, max_new_tokens: int = 4, **fields: Any) -> list[bytes]:
    async with connect(f"{server.ws}/ws/session", max_size=None) as ws:
        await ws.send(start_bytes(image, max_new_tokens, **fields))
        return await receive_all(ws)


async def refused(url: str, message: bytes | str | None = None, **connect_args: Any) -> tuple[Any, int | None, str]:
    """Open, optionally send one message; -> (the decoded error frame, close code, close reason)."""
    async with connect(url, max_size=None, **connect_args) as ws:
        if message is not None:
            await ws.send(message)
        data = await receive_all(ws)
    assert len(data) == 1, kinds(data)
    return frames.decode(data[0]), ws.close_code, ws.close_reason or ""


def raw_start(**fields: Any) -> bytes:
    """A start message written field by field (for malformed requests; the wire's own field names)."""
    data: bytes = msgpack.packb({"type": "start", **fields})
    return data


async def recv(ws: ClientConnection) -> bytes:
    """The next message, which must be a binary frame."""
    message = await ws.recv()
    assert isinstance(message, bytes), message
    return message


def session_of(data: bytes) -> str:
    start = frames.decode(data)
    assert isinstance(start, frames.StartFrame), start
    return start.session


class StallingSocket(socket.socket):
    """A client socket on a stalled network: once `after_bytes` have arrived, the next read waits
    until `release` is set; a fixed 64 KiB receive buffer (no autotuning) keeps what the server
    sends in the server's own buffers."""

    def __init__(self, after_bytes: int, release: threading.Event) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.after_bytes, self.release, self.received = after_bytes, release, 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self.received >= self.after_bytes:
            self.release.wait(60)
        data = super().recv(size, flags)
        self.received += len(data)
        return data


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most 60 s) until `condition()` holds."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting until {what}")


def noisy_png(side: int = 1400) -> bytes:
    """An RGB noise PNG of about 3 * side**2 bytes: a start frame that overfills the socket buffers."""
    import io

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()
