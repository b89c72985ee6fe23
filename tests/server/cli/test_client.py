"""cli/watch.py (`medviz watch`) against a real server: a viewer on a slow network is dropped with 4008
(or loses its connection, 1006), rejoins and prints every token exactly once."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from server.cli import watch as client
from server.settings import Settings
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import (
    LiveServer,
    StallingSocket,
    noisy_png,
    receive_all,
    recv,
    run,
    serve,
    session_of,
    start_bytes,
    until,
)


def watch_on_a_stalled_network(server: LiveServer, engine: GatedEngine, monkeypatch: pytest.MonkeyPatch,
                               gone: Callable[[], bool], stalled_s: float = 0.0
                               ) -> tuple[str, str, frames.EndFrame | None, list[bytes]]:
    """`medviz watch` a session with a 6 MB start frame through a network that stalls right after
    the handshake (its first connection only): the session runs on, the server drops the watcher,
    and the network recovers `stalled_s` after `gone()` says the server is done with it.
    -> (what watch printed, its notes, its end frame, the session's log)."""
    real, release = client.connect, threading.Event()
    opened: list[str] = []

    def first_one_stalled(url: str, **options: Any) -> Any:
        if not opened:
            stalled = StallingSocket(after_bytes=1, release=release)
            stalled.connect(("127.0.0.1", server.port))
            options["sock"] = stalled
        opened.append(url)
        return real(url, **options)

    monkeypatch.setattr(client, "connect", first_one_stalled)

    async def scenario() -> tuple[str, str, frames.EndFrame | None, list[bytes]]:
        async with connect(f"{server.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(noisy_png(), max_new_tokens=48, question=GATED))
            first = await recv(owner)
            channel = server.app.state.sessions._sessions[session_of(first)].channel
            (owners_viewer,) = channel.viewers
            out, err = io.StringIO(), io.StringIO()
            watching = asyncio.ensure_future(
                asyncio.to_thread(client.watch, f"{server.ws}/ws/watch/{session_of(first)}", out, err))
            await until(lambda: channel.watchers == 2, "the watcher has joined")
            (watcher,) = channel.viewers - {owners_viewer}
            engine.gate.set()  # steps now come while the watcher's socket is full
            rest = asyncio.ensure_future(receive_all(owner))
            await until(lambda: watcher.dropped.is_set() and gone(), "the server has dropped the watcher")
            await asyncio.sleep(stalled_s)
            release.set()
            end = await watching
            await rest
            return out.getvalue(), err.getvalue(), end, channel.log

    return run(scenario())


def texts(data: list[bytes]) -> str:
    return "".join(f.text for f in map(frames.decode, data) if isinstance(f, frames.StepFrame))


def test_a_watcher_that_falls_behind_receives_4008_and_rejoins_printing_every_token_once(
    tiny_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = GatedEngine(tiny_engine)
    with serve(Settings(model="tiny", recordings=tmp_path, viewer_queue=8), engine) as server:
        # the network stays stalled longer than the 5 s a close used to wait behind unsent bytes
        printed, notes, end, log = watch_on_a_stalled_network(server, engine, monkeypatch, lambda: True, 6.0)
    assert end is not None and (end.reason, end.tokens) == ("max_tokens", 48)
    assert printed == texts(log) + "\n"
    assert "\n[fell behind (4008); rejoining and catching up from the session log]\n" in notes


def test_a_watcher_whose_close_cannot_go_out_loses_the_connection_and_rejoins_after_1006(
    tiny_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = GatedEngine(tiny_engine)
    settings = Settings(model="tiny", recordings=tmp_path, viewer_queue=8, close_timeout_s=0.5)
    with serve(settings, engine) as server:
        connections = server.app.state.connections
        printed, notes, end, log = watch_on_a_stalled_network(
            server, engine, monkeypatch, lambda: connections.open["watch"] == 0)  # its 4008 was given up on
    assert end is not None and (end.reason, end.tokens) == ("max_tokens", 48)
    assert printed == texts(log) + "\n"
    assert "\n[lost the connection (1006); rejoining and catching up from the session log]\n" in notes
