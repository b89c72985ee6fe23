"""What fails in a scaled-out medviz, on a real Redis: a worker killed mid-session, a worker gone before it
started its job, Redis restarted. Each ends what was in flight with a clear error (or runs it elsewhere),
and the next session is served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from server.scale.keys import GROUP, Keys
from server.scale.queue import WORKER_STOPPED
from server.scale.sessions import FOLLOW_FAILED, GONE
from tests.conftest import REPO
from tests.scale.conftest import Cluster
from tests.server.helpers import kinds, receive_all, recv, run, session, session_of, start_bytes

KEYS = Keys()


def _worker_process(cluster: Cluster) -> subprocess.Popen[bytes]:
    """`medviz worker` in its own process, registered in Redis before this returns."""
    s = cluster.settings
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "worker", "--model", "tiny", "--recordings", str(s.recordings),
         "--heartbeat-s", str(s.heartbeat_s), "--reclaim-s", str(s.reclaim_s)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MEDVIZ_REDIS": cluster.redis.url})  # the password never on a command line
    client = cluster.redis.client()
    deadline = time.monotonic() + 90
    while not client.zcard(KEYS.workers):
        assert process.poll() is None and time.monotonic() < deadline, "medviz worker did not start"
        time.sleep(0.1)
    return process


def test_a_worker_killed_mid_session_ends_it_with_an_error_and_the_next_session_is_served(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a = cluster.node()
    process = _worker_process(cluster)
    try:
        async def killed() -> tuple[list[bytes], int | None, float]:
            async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
                await ws.send(start_bytes(sample_bytes, max_new_tokens=64, record=True))
                got = [await recv(ws), await recv(ws)]
                os.kill(process.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                got += await receive_all(ws)
                return got, ws.close_code, time.monotonic() - killed_at

        seen, code, waited = run(killed())
    finally:
        process.kill()
        process.wait(10)
    error = frames.decode(seen[-1])
    assert isinstance(error, frames.ErrorFrame) and (error.code, error.message, code) == (
        "internal", WORKER_STOPPED, 4500)
    assert kinds(seen)[:2] == ["start", "step"] and "end" not in kinds(seen)
    assert waited < cluster.settings.reclaim_s + 5
    cluster.worker(tiny_engine)
    assert kinds(run(session(a, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]


def test_a_job_taken_by_a_worker_that_died_before_starting_it_goes_to_another_worker(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a = cluster.node()
    client = cluster.redis.client()

    async def scenario() -> list[bytes]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=2))
            got = [await recv(ws)]  # queued: no worker is idle
            taken = client.xreadgroup(GROUP, "a-worker-that-dies", {KEYS.jobs: ">"}, count=1)  # and never claims
            assert len(taken[0][1]) == 1
            time.sleep(cluster.settings.reclaim_s + 2 * cluster.settings.heartbeat_s)
            cluster.worker(tiny_engine)
            return got + await receive_all(ws)

    seen = run(scenario())
    assert kinds(seen) == ["queued", "start", "step", "step", "end"]
    assert client.xpending(KEYS.jobs, GROUP)["pending"] == 0 and client.xlen(KEYS.jobs) == 0


def test_redis_restarted_mid_session_ends_it_with_an_error_and_the_next_session_is_served(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a, b = cluster.node(), cluster.node()
    worker = cluster.worker(tiny_engine)

    async def in_flight() -> tuple[list[bytes], int | None]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=64))
            got = [await recv(ws), await recv(ws)]
            cluster.redis.restart()
            got += await receive_all(ws)
            return got, ws.close_code

    seen, code = run(in_flight())
    error = frames.decode(seen[-1])
    assert isinstance(error, frames.ErrorFrame) and (error.code, error.message, code) == ("internal", GONE, 4500)
    deadline = time.monotonic() + 30
    while worker.served < 1:  # its run was stopped when Redis went away
        assert time.monotonic() < deadline
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while a.app.state.connections.open["session"]:  # the owner's leave has been handled on node A
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lost = session_of(seen[0])  # nothing the worker or node A wrote after the restart brought the session back
    assert cluster.redis.client().keys(f"medviz:s:{lost}*") == []
    for node in (a, b):
        assert kinds(run(session(node, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]


def test_a_reader_that_fails_unexpectedly_ends_its_session_with_an_error_not_a_wait(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes, monkeypatch: Any) -> None:
    import server.scale.sessions as redis_sessions

    a = cluster.node()
    cluster.worker(tiny_engine)
    real, read = redis_sessions.stream_item, [0]

    def fails_on_the_third(fields: Any) -> Any:
        read[0] += 1
        if read[0] == 3:
            raise RuntimeError("a frame this node cannot read")
        return real(fields)

    monkeypatch.setattr(redis_sessions, "stream_item", fails_on_the_third)

    async def owned() -> tuple[list[bytes], int | None]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=64))
            got = await receive_all(ws)
            return got, ws.close_code

    seen, code = run(owned())
    error = frames.decode(seen[-1])
    assert isinstance(error, frames.ErrorFrame) and (error.code, error.message, code) == (
        "internal", FOLLOW_FAILED, 4500)
    assert kinds(seen) == ["start", "step", "error"]
