"""Redis is a trust boundary: rogue entries written into a real Redis under a running worker and web node are
logged and skipped, and both keep serving; a web node with no live worker says so to a waiting session."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from server.scale.keys import GROUP, Keys, range_entries
from server.scale.queue import MALFORMED_JOB, RedisQueue
from server.scale.worker import JOB_FAILED
from tests.scale.conftest import Cluster
from tests.server.helpers import kinds, receive_all, recv, run, session, start_bytes, until

KEYS = Keys()
HUGE = b"x" * (2 * 1024 * 1024)
ROGUE_JOBS: list[dict[bytes, bytes]] = [
    {b"request": b"r", b"work": b"0"},  # no session
    {b"session": b"AAAAAAAAAAAAAAAAAAAAAA", b"request": b"r", b"work": b"abc"},  # work not an int
    {b"session": b"AAAAAAAAAAAAAAAAAAAAAB", b"request": b"r", b"work": b"99999999999999999999"},  # out of range
    {b"session": b"../../tmp/x", b"request": b"r", b"work": b"0"},  # a traversal id
    {b"\xff\xfe": b"\x00\x01", b"cmd": b"\x80"},  # garbage fields
    {b"session": HUGE, b"request": HUGE, b"work": HUGE},  # huge fields
]


def _write_rogue_entries(cluster: Cluster, worker: str, node: str) -> None:
    """One of each kind of entry a process reads, none of the form medviz writes."""
    r = cluster.redis.client()
    for fields in ROGUE_JOBS:
        r.xadd(KEYS.jobs, fields)  # type: ignore[arg-type]
    for command in ({b"cmd": b"cancel"}, {b"cmd": b"cancel", b"session": b"../x"}, {b"cmd": b"analyze"},
                    {b"cmd": b"analyze", b"node": b"a b", b"token": b"t", b"source": b"x", b"request": b"r"},
                    {b"cmd": b"withdraw"}, {b"cmd": b"nonsense"}, {b"\xff": HUGE}):
        r.xadd(KEYS.inbox(worker), command)  # type: ignore[arg-type]
    for reply in ({b"token": b"t"}, {b"token": b"../t", b"final": b"1"}, {b"token": b"t", b"final": b"x"}):
        r.xadd(KEYS.answers(node), reply)  # type: ignore[arg-type]
    r.hset(KEYS.session("rogue"), mapping={"state": "\xff", "created": "abc", "frames": "-1"})
    r.zadd(KEYS.sessions, {"rogue": time.time(), "../../etc": time.time()})
    far = int(time.time() * 1000) + 3_600_000
    r.zadd(KEYS.workers, {"../../w": far, "\xff": far})
    r.zadd(KEYS.nodes, {"../../n": far})


def test_rogue_entries_in_every_stream_leave_the_worker_and_web_nodes_serving(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a = cluster.node()
    worker = cluster.worker(tiny_engine)
    assert kinds(run(session(a, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]
    _write_rogue_entries(cluster, worker.name, a.app.state.sessions.node)
    r = cluster.redis.client()
    run(until(lambda: r.xlen(KEYS.jobs) == 0, "the rogue jobs acked and deleted"))
    assert r.xpending(KEYS.jobs, GROUP)["pending"] == 0
    time.sleep(3 * cluster.settings.heartbeat_s)  # several janitor passes and heartbeats over the rogue entries
    b = cluster.node()  # a web node started while they sit in Redis starts
    for node in (a, b, a):
        assert kinds(run(session(node, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]
    assert worker.served == 4
    assert all(thread.is_alive() for thread in worker._threads)
    names = {thread.name for thread in threading.enumerate()}
    assert {"medviz-janitor", "medviz-publisher", "medviz-inbox", "medviz-heartbeats", "medviz-answers"} <= names
    listed = httpx.get(f"{b.http}/api/sessions").json()["sessions"]
    assert [s["state"] for s in listed] == ["finished"] * 4  # the rogue hash is left out of the list


def test_a_malformed_job_of_a_waiting_session_ends_that_session_with_an_error(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    a = cluster.node()
    r = cluster.redis.client()

    async def scenario() -> tuple[list[bytes], int | None]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=2))
            got = [await recv(ws)]  # queued: no worker yet
            (entry, fields), = range_entries(r.xrange(KEYS.jobs))
            r.xdel(KEYS.jobs, entry)
            r.xadd(KEYS.jobs, {b"session": fields[b"session"], b"request": fields[b"request"], b"work": b"abc"})
            cluster.worker(tiny_engine)
            got += await receive_all(ws)
            return got, ws.close_code

    seen, code = run(scenario())
    error = frames.decode(seen[-1])
    assert kinds(seen) == ["queued", "error"] and code == 4500
    assert isinstance(error, frames.ErrorFrame) and (error.code, error.message) == ("internal", MALFORMED_JOB)
    assert kinds(run(session(a, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]


def test_a_web_node_with_no_live_worker_ends_a_waiting_session_busy_within_the_notice_time(
        cluster: Cluster, sample_bytes: bytes) -> None:
    a = cluster.node(no_worker_notice_s=1.0)

    async def waiting() -> tuple[list[bytes], int | None]:
        async with connect(f"{a.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=2))
            return await receive_all(ws), ws.close_code

    seen, code = run(waiting())
    assert kinds(seen) == ["queued", "error"] and code == 4429
    error = frames.decode(seen[-1])
    assert isinstance(error, frames.ErrorFrame) and (error.code, error.message) == (
        "busy", "no generation worker is serving tiny: none has been alive for 1 s or more; start the session again "
        "once one runs")
    assert cluster.redis.client().zcard(KEYS.line) == 0


def test_a_bug_in_one_iteration_of_each_loop_is_logged_and_the_worker_and_web_node_go_on(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes, monkeypatch: Any) -> None:
    a = cluster.node()
    worker = cluster.worker(tiny_engine)
    bugs = {"web": 1, "worker": 1, "job": 1}
    real_reclaim, real_run = RedisQueue.reclaim, worker._run

    def reclaim(queue: RedisQueue, consumer: str) -> int:  # the janitor's pass and the worker's heartbeat
        kind = consumer.split("-")[0]
        if bugs[kind]:
            bugs[kind] -= 1
            raise RuntimeError(f"a bug in one {kind} pass")
        return real_reclaim(queue, consumer)

    def job(entry: str, found: Any) -> None:
        if bugs["job"]:
            bugs["job"] -= 1
            raise RuntimeError("a bug in one job")
        real_run(entry, found)

    monkeypatch.setattr(RedisQueue, "reclaim", reclaim)
    monkeypatch.setattr(worker, "_run", job)
    failed = run(session(a, sample_bytes, max_new_tokens=2))
    error = frames.decode(failed[-1])
    assert isinstance(error, frames.ErrorFrame) and (error.code, error.message) == ("internal", JOB_FAILED)
    run(until(lambda: bugs == {"web": 0, "worker": 0, "job": 0}, "each loop's bug hit once"))
    assert kinds(run(session(a, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]
    assert all(thread.is_alive() for thread in worker._threads)
    assert a.app.state.sessions._janitor.is_alive()
