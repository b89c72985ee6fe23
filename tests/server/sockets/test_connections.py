"""sockets/connections.py and uvicorn_config.py over a real server: caps per kind and in total, idle
sockets, request heads that are slow or huge, and replays that hold an index, not the recording."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from medviz_core.wire.results import AnalysisFrame
from tests.server.helpers import LiveServer, kinds, receive_all, recv, refused, run, session, session_of
from tests.server.memory import GB, peak_growth
from tests.wire_client import encode_command

BUSY_REPLAYS = "the server has 2 replay connections open, its limit; try again shortly"


def recorded(server: LiveServer, sample_bytes: bytes, tokens: int = 3) -> str:
    return session_of(run(session(server, sample_bytes, max_new_tokens=tokens, record=True))[0])


def test_past_the_cap_of_its_kind_a_socket_gets_busy_and_4429(make_server: Any, sample_bytes: bytes) -> None:
    server: LiveServer = make_server(max_replay_sockets=2)
    name = recorded(server, sample_bytes)

    async def scenario() -> tuple[Any, int | None, str]:
        async with connect(f"{server.ws}/ws/replay/{name}"), connect(f"{server.ws}/ws/replay/{name}"):
            return await refused(f"{server.ws}/ws/replay/{name}")

    assert run(scenario()) == (frames.ErrorFrame("busy", BUSY_REPLAYS), 4429, BUSY_REPLAYS)
    assert kinds(run(session(server, sample_bytes, max_new_tokens=1))) == ["start", "step", "end"]


def test_past_the_total_cap_every_kind_gets_busy(make_server: Any, sample_bytes: bytes) -> None:
    server: LiveServer = make_server(max_sockets=2)
    name = recorded(server, sample_bytes)
    message = "the server has 2 websocket connections open, its limit; try again shortly"

    async def scenario() -> tuple[Any, int | None, str]:
        async with connect(f"{server.ws}/ws/replay/{name}"), connect(f"{server.ws}/ws/watch/{name}?stay=1"):
            return await refused(f"{server.ws}/ws/session")

    assert run(scenario()) == (frames.ErrorFrame("busy", message), 4429, message)


def test_a_stay_watcher_that_sits_idle_after_the_end_is_closed_with_4408(make_server: Any, sample_bytes: bytes) -> None:
    server: LiveServer = make_server(idle_timeout_s=0.5)
    name = recorded(server, sample_bytes)

    async def scenario() -> tuple[list[bytes], int | None, str | None]:
        async with connect(f"{server.ws}/ws/watch/{name}?stay=1") as ws:
            data = await receive_all(ws)
        return data, ws.close_code, ws.close_reason

    data, code, reason = run(scenario())
    assert (kinds(data), code, reason) == (["start", "step", "step", "step", "end"], 4408,
                                           "no message either way for 0.5 s")


def test_a_paused_replay_that_sits_idle_is_closed_with_4408(make_server: Any, sample_bytes: bytes) -> None:
    server: LiveServer = make_server(idle_timeout_s=0.5)
    name = recorded(server, sample_bytes)

    async def scenario() -> tuple[list[str], int | None]:
        async with connect(f"{server.ws}/ws/replay/{name}?speed=0.25") as ws:
            await ws.send(encode_command("pause"))
            data = await receive_all(ws)
        return kinds(data), ws.close_code

    got, code = run(scenario())
    assert code == 4408 and got[:2] == ["replay", "start"] and got[-1] == "replay"


def raw_http(port: int, *parts: bytes) -> bytes:
    """Send `parts` a moment apart, then read until the server closes (or 20 s pass: the socket
    times out and the test fails)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        for part in parts:
            conn.sendall(part)
            time.sleep(0.2)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def bytes_accepted(port: int, data: bytes) -> int:
    """How much of `data` the server takes before it closes the connection."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        try:
            for start in range(0, len(data), 65536):
                sent += conn.send(data[start:start + 65536])
        except (ConnectionResetError, BrokenPipeError):
            return sent
    return sent


def test_a_request_head_that_never_ends_is_closed_after_the_header_timeout(make_server: Any) -> None:
    server: LiveServer = make_server(header_timeout_s=0.5)
    assert raw_http(server.port, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a") == b""
    assert raw_http(server.port) == b""  # a connection that sends nothing at all
    assert httpx.get(f"{server.http}/api/health").status_code == 200


def test_a_request_head_over_16_kib_is_refused_with_400_and_a_10_mb_one_is_cut_off(make_server: Any) -> None:
    server: LiveServer = make_server()
    head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    answer = raw_http(server.port, head + b"a" * 10_000, b"a" * 10_000)  # 20 KB of head, still not whole
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"\r\n\r\nInvalid HTTP request received.")
    assert bytes_accepted(server.port, head + b"a" * 10_000_000 + b"\r\n\r\n") < 10_000_000
    assert httpx.get(f"{server.http}/api/health").status_code == 200


def test_twenty_replays_of_a_large_recording_hold_its_index_not_its_frames(
    make_server: Any, sample_bytes: bytes
) -> None:
    server: LiveServer = make_server()
    name = recorded(server, sample_bytes)
    path = Path(server.settings.recordings) / f"{name}.medviz"
    note = AnalysisFrame("heads-0-00000000", "heads", 0, "error", "x" * 3000).to_wire()
    with path.open("ab") as file:  # about 9 MB of frames a replay does not send (failed results)
        file.write(note * 3000)
    size = path.stat().st_size

    async def scenario() -> list[list[str]]:
        sockets = [await connect(f"{server.ws}/ws/replay/{name}?speed=8", max_size=None) for _ in range(20)]
        got = []
        for ws in sockets:
            data = [await recv(ws) for _ in range(6)]  # status, start, 3 steps, end
            got.append(kinds(data))
        for ws in sockets:
            await ws.close()
        return got

    with peak_growth() as growth:
        got = run(scenario())
    assert size > 9_000_000
    assert got == [["replay", "start", "step", "step", "step", "end"]] * 20
    assert growth[0] < 20 * size // 2, f"peak RSS grew {growth[0] / GB:.3f} GB for 20 replays of {size} bytes"


@pytest.mark.parametrize("route", ["/ws/watch/{}?stay=1", "/ws/replay/{}?speed=8"], ids=["stay-watcher", "replay"])
def test_a_socket_waiting_for_an_analysis_is_not_idle_and_closes_4408_once_answered(
    make_server: Any, sample_bytes: bytes, route: str
) -> None:
    from medviz_core.wire.client_frames import AnalyzeRequest
    from tests.wire_client import encode_analyze

    server: LiveServer = make_server(idle_timeout_s=0.5)
    name = recorded(server, sample_bytes)

    async def scenario() -> tuple[list[str], int | None]:
        async with connect(server.ws + route.format(name), max_size=None) as ws:
            await ws.send(encode_analyze(AnalyzeRequest("faithfulness", 2, method="raw", steps=8)))  # seconds of forwards
            data = await receive_all(ws)
        states = [f.status for f in map(frames.decode, data) if isinstance(f, frames.AnalysisFrame)]
        return states, ws.close_code

    assert run(scenario()) == (["queued", "running", "done"], 4408)
