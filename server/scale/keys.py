"""Every Redis key, stream entry and client setting that web nodes and workers share, in one place.

Owns: `Keys` (the names under one prefix, default `medviz`), the entry formats of the three
kinds of stream (a session's frames, the job queue, a worker's inbox and a web node's
answers), `connect`/`connect_async` (redis-py clients with short timeouts and one retry, so a
restarted Redis is reconnected to on the next command) and `worker_name`. Keys:

- `P:jobs` stream (group `workers`): one entry per start request (session id, request bytes,
  image work, `pacs`: 1 when the web node itself retrieved the images from its PACS, absent in
  older entries), until its job ends (XACK + XDEL);
- `P:line` sorted set: the session ids waiting, in order (positions, the cap); `P:seq` its counter;
- `P:sessions` sorted set: session id -> created (the sessions list), pruned with the hashes;
- `P:workers`, `P:idle`, `P:nodes` sorted sets: name -> expiry of its last heartbeat (live
  workers, idle workers, web nodes), pruned past expiry;
- `P:w:NAME` hash: a worker's model, device, host, pid; `P:w:NAME:inbox` stream: cancel,
  analyze and withdraw commands for that worker; `P:n:NODE:answers` stream: analysis answers
  for one web node (both kept alive by their owner's heartbeat);
- `P:s:ID` hash (state, created, record, owner, worker, job entry, frames count), `P:s:ID:frames`
  stream (the frames, bytes unchanged, then an end marker), `P:s:ID:source` (the recording-only
  source frame, for exports), `P:s:ID:watchers` hash (web node -> its viewers): they expire
  together, `session_ttl_s` after the start at the latest and `linger_s` after the end.

One Redis (a primary, optionally with replicas or Sentinel), not Redis Cluster: scripts
touch several keys at once. Does not own what is done with them (scale/queue.py,
scale/sessions.py, scale/worker.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from medviz_core.errors import BusyError
from server.broadcast import Close

log = logging.getLogger("medviz.server")

GROUP = "workers"  # the consumer group of P:jobs
FRAME, KEPT, END, REASON = b"f", b"k", b"end", b"reason"  # a frames entry: {f, k} or the end marker {end, reason}
Fields = dict[bytes, bytes]
Entry = tuple[str, Fields]  # a stream entry: its id and fields
CONNECT_S = 2.0  # connect timeout of the clients: a dead Redis is noticed, never waited on for long
REPLY_S = 5.0  # how long a reply may take (blocking reads block for less)
UNREACHABLE = "the session store (Redis) is unreachable; try again shortly"


def _under(kind: str, part: str = "") -> Callable[[Keys, str], str]:
    def key(keys: Keys, name: str) -> str:
        return f"{keys.prefix}:{kind}:{name}{part}"

    return key


@dataclass(frozen=True)
class Keys:
    """The key names under `prefix`: the fixed ones as fields, the per-name ones as methods."""

    prefix: str = "medviz"
    jobs: str = field(init=False)
    line: str = field(init=False)
    seq: str = field(init=False)
    sessions: str = field(init=False)
    workers: str = field(init=False)
    nodes: str = field(init=False)
    idle: str = field(init=False)

    def __post_init__(self) -> None:
        for name in ("jobs", "line", "seq", "sessions", "workers", "nodes", "idle"):
            object.__setattr__(self, name, f"{self.prefix}:{name}")

    worker, inbox = _under("w"), _under("w", ":inbox")  # P:w:NAME, P:w:NAME:inbox
    answers = _under("n", ":answers")  # P:n:NODE:answers
    session, frames = _under("s"), _under("s", ":frames")  # P:s:ID, P:s:ID:frames
    source, watchers = _under("s", ":source"), _under("s", ":watchers")  # P:s:ID:source, P:s:ID:watchers

    def of_session(self, session_id: str) -> tuple[str, str, str, str]:
        """Every key of one session (they expire together)."""
        return (self.session(session_id), self.frames(session_id), self.source(session_id),
                self.watchers(session_id))


def frame_entry(data: bytes, keep: bool) -> Fields:
    """A frame as a stream entry; `keep` False: live viewers only (`queued`), never in a late joiner's backlog."""
    return {FRAME: data, KEPT: b"1" if keep else b"0"}


def end_entry(close: Close) -> Fields:
    """The marker after a session's last frame: how its viewers' sockets close."""
    return {END: str(int(close[0])).encode(), REASON: close[1].encode("utf-8")}


def range_entries(reply: Any) -> list[Entry]:
    """The (id, fields) of an XRANGE or XAUTOCLAIM list of entries (a deleted one has no fields: {})."""
    return [(text(entry), dict(fields or {})) for entry, fields in reply or ()]


def read_entries(reply: Any) -> list[Entry]:
    """The entries of an XREAD / XREADGROUP reply, of every stream in it, in order."""
    streams = reply.values() if isinstance(reply, dict) else [entries for _, entries in reply or ()]
    return [entry for entries in streams for entry in range_entries(entries)]


def text(value: Any) -> str:
    """A Redis reply (bytes or None) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else "" if value is None else str(value)


_TIMEOUTS: dict[str, Any] = {"socket_timeout": REPLY_S, "socket_connect_timeout": CONNECT_S,
                              "health_check_interval": 30}


def connect(url: str) -> redis.Redis:
    """A blocking client: one retry (a pooled connection a restart broke is replaced), short timeouts."""
    client: redis.Redis = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **_TIMEOUTS)
    return client


def connect_async(url: str) -> aioredis.Redis:
    """The asyncio client, likewise. Its retry must be redis.asyncio's: the blocking one would hand back the
    command's coroutine unawaited, so a failure inside it would never be retried."""
    client: aioredis.Redis = aioredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 1), **_TIMEOUTS)
    return client


def follow(client: redis.Redis, stream: str, stop: threading.Event, each: Callable[[Fields], None], count: int,
           block_ms: int) -> None:
    """Hand every entry of `stream` added from now on to `each`, in order, until `stop` (a thread's loop: blocking
    reads of up to `count` entries, at most `block_ms` each; while Redis is away it tries again every 0.5 s). An
    entry `each` fails on is logged and the loop goes on: one bad message never stops a process's inbox."""
    last = "0-0"  # the stream is this process's own and new: everything in it is for us
    while not stop.is_set():
        try:
            got = read_entries(client.xread({stream: last}, count=count, block=block_ms))
        except redis.RedisError:
            stop.wait(0.5)
            continue
        except Exception:  # a reply it cannot read: logged, and the loop goes on (never a silent dead inbox)
            log.exception("%s: a read failed", stream)
            stop.wait(0.5)
            continue
        for entry, fields in got:
            last = entry
            try:
                each(fields)
            except Exception as error:
                log.error("%s: entry %s failed: %s", stream, entry, type(error).__name__, exc_info=True)


def worker_name(kind: str) -> str:
    """A name no other process has: kind, host, pid and a random tail."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def unreachable(error: Exception) -> BusyError:
    return BusyError(f"{UNREACHABLE} ({type(error).__name__})")
