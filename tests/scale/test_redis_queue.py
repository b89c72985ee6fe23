"""The queue's pipelines and scripts on a real Redis: scripts by sha alone (recovered once Redis forgets them), a
session's end and its job's ack in one script, an owner check that writes before it reads, clients that retry once
after a restart."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from server.scale.entries import EndItem, FrameItem, stream_item
from server.scale.keys import GROUP, Keys, connect, connect_async, follow, range_entries
from server.scale.queue import RedisQueue
from server.settings import Settings
from tests.scale.conftest import RedisServer

KEYS = Keys()


def queue_with_a_session(redis_server: RedisServer, tmp_path: Path) -> RedisQueue:
    settings = Settings(model="tiny", recordings=tmp_path / "recordings", redis_url=redis_server.url)
    queue = RedisQueue(redis_server.client(), KEYS, settings)
    queue.ensure_group()
    assert queue.submit("s1", b"request", 0, False, 0.0) == 1  # first in line, no worker idle
    return queue


def frames_in_redis(redis_server: RedisServer) -> list[bytes]:
    """The session's kept frames (submit's `queued` frame is for live viewers only)."""
    entries = range_entries(redis_server.client().xrange(KEYS.frames("s1")))
    items = [stream_item(fields) for _, fields in entries]
    return [item.data for item in items if isinstance(item, FrameItem) and item.kept]


def test_a_batch_of_frames_runs_its_scripts_by_sha_without_asking_redis_first(redis_server: RedisServer,
                                                                              tmp_path: Path) -> None:
    queue = queue_with_a_session(redis_server, tmp_path)
    first = queue.r.pipeline(transaction=False)
    queue.frame(first, "s1", b"zero", True)
    queue.execute(first)  # the first use of a script on this Redis loads it (NOSCRIPT, SCRIPT LOAD, again)
    with redis_server.commands() as seen:
        pipe = queue.r.pipeline(transaction=False)
        for data in (b"one", b"two", b"three"):
            queue.frame(pipe, "s1", data, True)
        queue.execute(pipe)
    assert [command.split()[0].strip('"').upper() for command in seen] == ["EVALSHA"] * 3
    assert frames_in_redis(redis_server) == [b"zero", b"one", b"two", b"three"]


def test_a_batch_after_redis_forgot_its_scripts_loads_them_and_runs_each_command_once_in_order(
        redis_server: RedisServer, tmp_path: Path) -> None:
    queue = queue_with_a_session(redis_server, tmp_path)
    redis_server.client().script_flush()  # as a restart does
    pipe = queue.r.pipeline(transaction=False)
    queue.frame(pipe, "s1", b"one", True)
    pipe.incr("plain")  # a command without a script in the same batch
    queue.frame(pipe, "s1", b"two", True)
    replies = queue.execute(pipe)
    assert frames_in_redis(redis_server) == [b"one", b"two"]
    assert replies[1] == 1 and redis_server.client().get("plain") == b"1"
    with redis_server.commands() as seen:
        queue.frame(pipe, "s1", b"three", True)  # the script is known again: one round trip
        queue.execute(pipe)
    assert [command.split()[0].strip('"').upper() for command in seen] == ["EVALSHA"]
    assert frames_in_redis(redis_server) == [b"one", b"two", b"three"]


def taken_job(queue: RedisQueue) -> str:
    """The session's job entry, read by a worker of the group (so it is pending until acked)."""
    reply = queue.r.xreadgroup(GROUP, "worker-1", {KEYS.jobs: ">"}, count=1)
    return str(reply[0][1][0][0].decode())


@pytest.mark.parametrize("session_lost", [False, True], ids=["session kept", "session lost by Redis"])
def test_finishing_a_session_acks_its_job_in_the_same_script_as_the_end(redis_server: RedisServer, tmp_path: Path,
                                                                         session_lost: bool) -> None:
    queue = queue_with_a_session(redis_server, tmp_path)
    entry = taken_job(queue)
    if session_lost:
        queue.r.delete(KEYS.session("s1"))
    with redis_server.commands() as seen:
        pipe = queue.r.pipeline(transaction=False)
        queue.finish(pipe, "s1", (1000, "session ended"), entry)
        queue.execute(pipe)
    sent = {command.split()[0].strip('"').upper() for command in seen}
    assert sent == {"EVALSHA", "SCRIPT"}  # the script (loaded on its first use): no XACK of the client's own
    assert queue.r.xpending(KEYS.jobs, GROUP)["pending"] == 0 and queue.r.xlen(KEYS.jobs) == 0
    last = range_entries(queue.r.xrevrange(KEYS.frames("s1"), count=1))[0][1]
    assert (not isinstance(stream_item(last), EndItem)) is session_lost


def test_an_owner_check_writes_this_nodes_zero_before_it_reads_every_count(redis_server: RedisServer,
                                                                           tmp_path: Path) -> None:
    queue = queue_with_a_session(redis_server, tmp_path)
    queue.note(queue.r, "s1", KEYS.watchers("s1"), "node-a", 3)
    queue.note(queue.r, "s1", KEYS.watchers("s1"), "node-b", 2)
    assert queue.owner_check("s1", "node-a") == ("queued", "1", {"node-a": 0, "node-b": 2})  # owner still there
    queue.r.delete(KEYS.session("s1"))
    assert queue.owner_check("s1", "node-a") is None


def test_both_clients_retry_once_on_a_connection_a_redis_restart_broke(redis_server: RedisServer) -> None:
    blocking, asyncio_client = connect(redis_server.url), connect_async(redis_server.url)

    async def exists_twice() -> tuple[int, int]:
        first = await asyncio_client.exists("x")
        redis_server.restart()  # the pooled connection is now a dead socket
        second = await asyncio_client.exists("x")
        await asyncio_client.aclose()
        return first, second

    assert blocking.exists("x") == 0
    assert asyncio.run(exists_twice()) == (0, 0)
    assert blocking.exists("x") == 0


def test_an_inbox_reads_on_past_an_entry_its_handler_fails_on(redis_server: RedisServer) -> None:
    client, stop, handled = redis_server.client(), threading.Event(), []

    def handle(fields: dict[bytes, bytes]) -> None:
        if fields[b"n"] == b"1":
            raise KeyError("a command this process cannot read")
        handled.append(fields[b"n"])
        if len(handled) == 2:
            stop.set()

    for n in (b"1", b"2", b"3"):
        client.xadd("inbox", {"n": n})
    reader = threading.Thread(target=follow, args=(connect(redis_server.url), "inbox", stop, handle, 8, 100))
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and handled == [b"2", b"3"]
