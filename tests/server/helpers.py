"""Helpers for server tests: a real uvicorn server on a free loopback port in a thread, and clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import msgpack
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from medviz_core import frames
from medviz_core.frames import StartRequest
from server.app import create_app
from server.settings import Settings

T = TypeVar("T")


@dataclass
class LiveServer:
    settings: Settings
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve(settings: Settings, engine: Any) -> Iterator[LiveServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(dataclasses.replace(settings, port=port), engine=engine)
    config = uvicorn.Config(app, log_level="warning", ws_max_size=settings.ws_max_size, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(settings=settings, port=port)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


def start_bytes(image: bytes, max_new_tokens: int = 4, **fields: Any) -> bytes:
    return frames.encode_client_start(StartRequest(image=image, max_new_tokens=max_new_tokens, **fields))


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
    async with connect(f"{server.ws}/ws/session") as ws:
        await ws.send(start_bytes(image, max_new_tokens, **fields))
        return await receive_all(ws)


async def refused(url: str, message: bytes | str | None = None, **connect_args: Any) -> tuple[Any, int | None, str]:
    """Open, optionally send one message; -> (the decoded error frame, close code, close reason)."""
    async with connect(url, **connect_args) as ws:
        if message is not None:
            await ws.send(message)
        data = await receive_all(ws)
    assert len(data) == 1, kinds(data)
    return frames.decode(data[0]), ws.close_code, ws.close_reason or ""


def raw_start(**fields: Any) -> bytes:
    return msgpack.packb({"type": "start", **fields})
