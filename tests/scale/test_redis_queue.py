"""The queue's pipelines on a real Redis: scripts by sha alone, and recovered once Redis forgets them."""

from __future__ import annotations

from pathlib import Path

from server.redis_keys import Keys, frame_of, range_entries
from server.redis_queue import RedisQueue
from server.settings import Settings

from .conftest import RedisServer

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
    return [data for data, kept in (frame_of(fields) for _, fields in entries) if kept]


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
