"""Live sessions of a stateless web node: the SessionManager whose queue, logs, cancels and analyses are in Redis.

Owns: `RedisSessions` (`medviz serve --redis URL`). A start request becomes a job in `P:jobs`
(scale/queue.py: the cap gives busy, the position a `queued` frame); the worker that claims it
appends the session's frames to `P:s:ID:frames`. This node follows a session while it has
viewers of it: one reader task per session blocks on new entries (XREAD) and publishes each
frame into a broadcast `Channel` (broadcast.py: bounded per-viewer queues, a slow viewer closed
4008, late joiners served from the channel's log), so one read from Redis feeds every viewer on
this node. A watcher of a session this node does not follow gets its frames so far from Redis
(XRANGE) first. After the end the channel stays `linger_s` (so does the stream: its TTL).
Cancels and owner-gone checks (the owner's flag and each web node's viewer count) go through
Redis to the worker; analyses too (scale/remote_analyses.py); the owner's view
(`live_source(owner=True)`, its Send to PACS) reads the worker's source frame (`P:s:ID:source`:
the DICOM headers and the `from_pacs` mark the worker took from the job, scale/queue.py's
submit) once it exists. An owner's rejoin (sessions.py) works through any node: the owner key's
hash, the count of the owner's open sockets (`owner`) and the time until which it may come back
(`owner_until`, Redis's clock) are fields of the session's hash, checked and counted in one
script. The short Redis commands of the interface run on the event loop (a round trip each,
never a blocking read); a heartbeat thread keeps this node alive in `P:nodes`, refreshes the
live workers, and reclaims abandoned jobs. Redis lost: a request is refused `busy`; a followed
session whose Redis stays away `redis_wait_s`, or comes back without the session, ends with an
`internal` error frame (close 4500). Does not own the steps of the queue (scale/queue.py) or
the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

import redis

from medviz_core.analyses.compute import AnalysisSource, viewer_view
from medviz_core.errors import BusyError
from medviz_core.recording.deidentify import Deidentifier
from medviz_core.types import source_key
from medviz_core.wire.client_frames import StartRequest
from medviz_core.wire.codes import ErrorCode, close_code_for
from medviz_core.wire.server_frames import ErrorFrame
from server.analysis_jobs import AnalysisJobs
from server.broadcast import Channel, Viewer
from server.guard.image_budget import ImageBudget
from server.scale.auth import require_auth
from server.scale.entries import (
    BadEntry,
    EndItem,
    FrameItem,
    count,
    integer,
    label,
    names,
    number,
    session_ids,
    session_row,
    stream_item,
)
from server.scale.keys import (
    Keys,
    connect,
    connect_async,
    range_entries,
    read_entries,
    text,
    unreachable,
    worker_name,
)
from server.scale.queue import RedisQueue
from server.scale.remote_analyses import RemoteAnalyses
from server.sessions import (
    SessionInfo,
    SessionSource,
    gone_for,
    key_hash,
    owner_key_matches,
    refuse_rejoin,
    unknown,
)
from server.settings import Settings

log = logging.getLogger("medviz.server")

BLOCK_MS = 2000  # a reader's blocking read; after an empty one it checks that its session still exists
LIST_MAX = 200  # sessions listed by /api/sessions, newest first
ENDED_KEPT = 64  # ended sessions whose channels a node keeps (for late joiners) before linger_s is up
LOST = "lost the connection to the session store (Redis); this session's frames cannot be followed"
FOLLOW_FAILED = "this web node failed to follow the session's frames (its log says why)"
GONE = "this session's log is gone from the session store (Redis restarted or it expired); start it again"
NO_WORKER = ("no generation worker is serving {model}: none has been alive for {waited:g} s or more; start the "
             "session again once one runs")
_FAILURES = (redis.ConnectionError, redis.TimeoutError)
_TIME = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
_REJOIN = _TIME + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unknown' end
local f = redis.call('HMGET', KEYS[1], 'owner_key', 'owner', 'owner_until')
if not f[1] or f[1] ~= ARGV[1] then return 'mismatch' end
if tonumber(f[2] or '0') <= 0 and now > tonumber(f[3] or '0') then return 'expired' end
redis.call('HINCRBY', KEYS[1], 'owner', 1)
return 'ok'
"""
_OWNER_LEFT = _TIME + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local left = redis.call('HINCRBY', KEYS[1], 'owner', -1)
if left <= 0 then redis.call('HSET', KEYS[1], 'owner', 0, 'owner_until', now + tonumber(ARGV[1])) end
return 1
"""
_REJOIN_WHY = {"unknown": "it does not exist or has expired", "mismatch": "the owner key does not match"}


@dataclass(eq=False)
class _Followed:
    channel: Channel
    last: str = "0-0"  # the last entry read from its stream
    source: SessionSource = field(default_factory=SessionSource)
    task: asyncio.Task[None] | None = None
    failed: bool = False  # ended here by _fail (Redis lost), not by the stream's end: the worker may still run


class RedisSessions:
    """A web node's sessions; every method but close runs on the event loop."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings, self.loop = settings, loop
        self.keys = Keys(settings.redis_prefix)
        self.node = worker_name("web")
        self.model, self.device = settings.model, "remote"  # the live workers' own, once one is seen
        require_auth(settings.redis_url or "", settings.redis_insecure)
        self.r = connect(settings.redis_url or "")
        self.aredis = connect_async(settings.redis_url or "")
        self.queue = RedisQueue(self.r, self.keys, settings)
        self.images = ImageBudget(settings.image_budget_bytes, loop)
        self.workers: list[str] = []  # the live workers, as of the last heartbeat
        self.nodes: list[str] = []  # the live web nodes
        self.remote = RemoteAnalyses(settings, self.keys, self.node, self._worker_of, lambda: self.workers)
        self.analyses = AnalysisJobs(None, self.remote, settings.analysis_cache, compute=self.remote.compute,
                                     record=False)
        self._followed: dict[str, _Followed] = {}
        self._counts_due: dict[str, _Followed] = {}  # sessions whose viewer count here changed this turn
        self._ended: list[str] = []
        self._stop = threading.Event()
        self._worker_seen = time.monotonic()  # when the last pass saw a live worker (or this node started)
        self._rejoin = self.r.register_script(_REJOIN)
        self._owner_left = self.r.register_script(_OWNER_LEFT)
        self._janitor_pass()
        self._janitor = threading.Thread(target=self._janitor_loop, name="medviz-janitor", daemon=True)
        self._janitor.start()

    # -- the SessionManager interface ------------------------------------------------------

    def submit(self, request: StartRequest, image_work: int = 0, owner_key: str | None = None) -> tuple[str, Viewer]:
        session_id = secrets.token_urlsafe(16)
        try:
            position = self.queue.submit(session_id, request.to_wire(), image_work, request.record, time.time(),
                                         from_pacs=request.from_pacs)  # never in to_wire's bytes: the job's own field
            if position < 0:
                raise BusyError(f"the generation queue is full ({self.settings.queue_cap} waiting); try again "
                                "shortly")
            if owner_key is not None:
                key = self.keys.session(session_id)
                self.queue.note(self.r, session_id, key, "owner_key", key_hash(owner_key))
            followed = self._follow(session_id, _Followed(Channel(self.settings.viewer_queue)))
            owner = followed.channel.subscribe()
            self._count(session_id, followed)
        except redis.RedisError as error:
            raise unreachable(error) from None
        log.info("session %s queued at %d through Redis: %d image(s), question %s, max tokens %s, record %s",
                 session_id, position, len(request.images), "yes" if request.question else "no",
                 request.params.max_new_tokens or "the model's", request.record)
        return session_id, owner

    def rejoin(self, session_id: str, owner_key: str) -> Viewer:
        try:
            found = text(self._rejoin(keys=[self.keys.session(session_id)], args=[key_hash(owner_key)]))
        except redis.RedisError as error:
            raise unreachable(error) from None
        if found != "ok":
            why = _REJOIN_WHY.get(found, gone_for(self.settings.owner_grace_s))
            raise refuse_rejoin(session_id, why)
        log.info("session %s: owner rejoined through web node %s", session_id, self.node)
        return self.watch(session_id)

    def watch(self, session_id: str) -> Viewer:
        followed = self._followed.get(session_id) or self._load(session_id)
        viewer = followed.channel.subscribe()
        self._count(session_id, followed)
        return viewer

    def is_owner(self, session_id: str, owner_key: str) -> bool:
        try:
            stored = self.r.hget(self.keys.session(session_id), "owner_key")
        except redis.RedisError as error:
            raise unreachable(error) from None
        return owner_key_matches(None if stored is None else text(stored), owner_key)

    def live_source(self, session_id: str, owner: bool = False) -> AnalysisSource:
        followed = self._followed.get(session_id) or self._load(session_id)
        if owner and not followed.source.headers:  # the owner's Send to PACS needs the source frame: headers, mark
            try:
                kept = self.r.get(self.keys.source(session_id))  # the worker's recording-only frame (no viewer's)
            except redis.RedisError as error:
                raise unreachable(error) from None
            if isinstance(kept, bytes):
                followed.source.keep(kept)
        source = followed.source.source(session_id, followed.channel.log, None)  # the worker records results
        # the worker computes; the key tells it whose view (scale/worker_sources.py)
        return source if owner else viewer_view(source, Deidentifier(), recording_deidentified=False)

    def leave(self, session_id: str, viewer: Viewer, owner: bool = False, grace: bool = False) -> None:
        """A viewer leaves. After the end nothing goes to Redis (a lecture hall leaving at once costs
        no round trip); before it, this node's count is written once per turn of the loop, and the
        owner-gone check (_stop_if_abandoned) asks Redis only once this node has nobody watching."""
        followed = self._followed.get(session_id)
        if followed is not None:
            followed.channel.unsubscribe(viewer)
            if followed.channel.ended and not followed.failed:
                return
            self._count(session_id, followed)
        if owner:
            try:
                rejoin_s = self.settings.owner_grace_s if grace else 0.0  # a deliberate leave: no rejoin
                self._owner_left(keys=[self.keys.session(session_id)], args=[rejoin_s])
            except redis.RedisError as error:
                log.info("session %s: leave not recorded: %s", session_id, type(error).__name__)
                return
        if grace:
            self.loop.call_later(self.settings.owner_grace_s, self._stop_if_abandoned, session_id)
        else:
            self._stop_if_abandoned(session_id)

    def writing(self, recording_id: str) -> bool:
        try:
            record, state = self.r.hmget(self.keys.session(recording_id), "record", "state")
        except redis.RedisError as error:
            raise unreachable(error) from None
        return text(record) == "1" and text(state) in ("queued", "running")

    def cancel(self, session_id: str) -> None:
        try:
            found = self.queue.cancel(session_id)
            if found is None:
                raise unknown(session_id)
            state, holder = found
            if state == "waiting":
                self.queue.cancel_waiting(session_id, holder)
            elif state == "running" and names([holder.encode()]):  # a worker's name: never another key
                self.r.xadd(self.keys.inbox(holder), {"cmd": "cancel", "session": session_id}, maxlen=10_000)
        except redis.RedisError as error:
            raise unreachable(error) from None

    def sessions(self) -> list[SessionInfo]:
        try:
            ids = session_ids(self.r.zrevrange(self.keys.sessions, 0, LIST_MAX - 1))
            pipe = self.r.pipeline(transaction=False)
            for session_id in ids:
                pipe.hmget(self.keys.session(session_id), "state", "created", "frames", "record")
                pipe.hvals(self.keys.watchers(session_id))
            replies = pipe.execute()
        except redis.RedisError as error:
            raise unreachable(error) from None
        listed, gone = [], []
        for session_id, (state, created, frames, record), watchers in zip(ids, replies[::2], replies[1::2]):
            if state is None:
                gone.append(session_id)
                continue
            try:
                row = session_row(state, created, frames, record)
                seen = sum(count(w) for w in watchers)
            except BadEntry as error:
                log.warning("session %s: left out of the list: %s", session_id, error)
                continue
            listed.append(SessionInfo(id=session_id, created=row.created, state=row.state, frames=row.frames,
                                      watchers=seen, recording=row.recording))
        if gone:
            with contextlib.suppress(redis.RedisError):
                self.r.zrem(self.keys.sessions, *gone)
        return listed

    @property
    def queue_length(self) -> int:
        try:
            return int(self.r.zcard(self.keys.line))
        except redis.RedisError:
            return 0

    def close(self) -> None:
        """From a thread other than the loop's (the app's lifespan)."""
        self._stop.set()
        self._janitor.join(10)
        self.remote.close()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._aclose(), self.loop).result(10)
        self.images.close()

    async def _aclose(self) -> None:
        tasks = [f.task for f in self._followed.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.aredis.aclose()

    # -- following a session's stream ------------------------------------------------------

    def _load(self, session_id: str) -> _Followed:
        """A session this node does not follow: its frames so far from Redis, then a reader if it goes on."""
        try:
            known = self.r.exists(self.keys.session(session_id))
            entries = range_entries(self.r.xrange(self.keys.frames(session_id)))
        except redis.RedisError as error:
            raise unreachable(error) from None
        if not known and not entries:
            raise unknown(session_id)
        followed = _Followed(Channel(self.settings.viewer_queue))
        for entry, fields in entries:
            followed.last = entry
            item = _item(session_id, entry, fields)
            if isinstance(item, EndItem):
                followed.channel.end(item.close)
                break
            if item is not None and item.kept:
                followed.channel.publish(item.data)
        return self._follow(session_id, followed)

    def _follow(self, session_id: str, followed: _Followed) -> _Followed:
        self._followed[session_id] = followed
        if followed.channel.ended:
            self._end(session_id, followed)
        else:
            followed.task = self.loop.create_task(self._read(session_id, followed))
        return followed

    async def _read(self, session_id: str, followed: _Followed) -> None:
        """Follow the session's stream to its end; whatever goes wrong ends it with an error frame, so no viewer
        ever waits on a reader that is gone."""
        try:
            await self._read_stream(session_id, followed)
        except Exception:
            log.exception("session %s: following its frames failed", session_id)
            if not followed.channel.ended:
                self._fail(session_id, followed, FOLLOW_FAILED)

    async def _read_stream(self, session_id: str, followed: _Followed) -> None:
        lost_at: float | None = None
        while True:
            try:
                got = await self.aredis.xread({self.keys.frames(session_id): followed.last}, count=512,
                                              block=BLOCK_MS)
                if (not got or lost_at is not None) and not await self.aredis.exists(self.keys.session(session_id)):
                    return self._fail(session_id, followed, GONE)  # nothing new and no session, or back without it
            except _FAILURES:
                lost_at = lost_at or self.loop.time()
                if self.loop.time() - lost_at >= self.settings.redis_wait_s:
                    return self._fail(session_id, followed, LOST)
                await asyncio.sleep(0.25)
                continue
            lost_at = None
            for entry, fields in read_entries(got):
                followed.last = entry
                item = _item(session_id, entry, fields)
                if isinstance(item, EndItem):
                    followed.channel.end(item.close)
                    return self._end(session_id, followed)
                if item is not None:
                    followed.channel.publish(item.data, item.kept)

    def _fail(self, session_id: str, followed: _Followed, message: str) -> None:
        followed.failed = True
        log.warning("session %s: %s", session_id, message)
        followed.channel.publish(ErrorFrame(ErrorCode.INTERNAL, message).to_wire())
        followed.channel.end((close_code_for(ErrorCode.INTERNAL), message))
        self._end(session_id, followed)

    def _end(self, session_id: str, followed: _Followed) -> None:
        """An ended session's channel stays for late joiners, `linger_s` or until ENDED_KEPT newer ones ended."""
        self._ended.append(session_id)
        self.loop.call_later(self.settings.linger_s, self._drop, session_id, followed)
        while len(self._ended) > ENDED_KEPT:
            oldest = self._ended.pop(0)
            self._drop(oldest, self._followed.get(oldest))

    def _drop(self, session_id: str, followed: _Followed | None) -> None:
        if followed is not None and self._followed.get(session_id) is followed:
            del self._followed[session_id]
            self.analyses.forget(source_key("session", session_id))

    # -- owners, watchers, workers ---------------------------------------------------------

    def _count(self, session_id: str, followed: _Followed) -> None:
        """This node's viewers of the session, for the owner-gone check on other nodes: due now, written
        with every other due count in one round trip at the next turn of the loop (joins and leaves of a
        crowd cost one write per turn, not one per viewer)."""
        if not self._counts_due:
            self.loop.call_soon(self._write_counts)
        self._counts_due[session_id] = followed

    def _write_counts(self) -> None:
        due, self._counts_due = self._counts_due, {}
        pipe = self.r.pipeline(transaction=False)
        for session_id, followed in due.items():
            self.queue.note(pipe, session_id, self.keys.watchers(session_id), self.node, followed.channel.watchers)
        try:
            self.queue.execute(pipe)
        except redis.RedisError as error:
            log.info("web node %s: viewer counts not written (%s); again in %.1f s", self.node,
                     type(error).__name__, self.settings.heartbeat_s)
            retry = not self._counts_due
            for session_id, followed in due.items():
                self._counts_due.setdefault(session_id, followed)  # a newer count due meanwhile wins
            if retry:
                self.loop.call_later(self.settings.heartbeat_s, self._write_counts)

    def _stop_if_abandoned(self, session_id: str) -> None:
        """Stop a session whose owner left and that nobody watches on any live node. This node's own count
        (0) is written in the same script as the reads, before them: of two nodes checking at once, the
        later always sees the other's 0."""
        followed = self._followed.get(session_id)
        if followed is not None and followed.channel.watchers > 0:
            return  # somebody here still watches
        try:
            owners, until = self.r.hmget(self.keys.session(session_id), "owner", "owner_until")
            seconds, micros = self.r.time()
            wait = number(until or b"0", "owner_until") - (seconds + micros / 1e6)
            owner_sockets = integer(owners or b"0", -(2**31), 2**31, "the owner count")
            if owner_sockets <= 0 and wait > 0:  # its owner may still rejoin (a later leave set a later time)
                self.loop.call_later(wait, self._stop_if_abandoned, session_id)
                return
            found = self.queue.owner_check(session_id, self.node)
            if found is None:
                return
            state, owner, counts = found
            if owner != "0" or state not in ("queued", "running"):
                return
            if any(n > 0 and node in self.nodes for node, n in counts.items()):
                return
            log.info("session %s: owner gone and nobody watching on any node; stopping", session_id)
            self.cancel(session_id)
        except (BusyError, redis.RedisError, BadEntry) as error:
            log.info("session %s: owner check failed: %s", session_id, type(error).__name__)

    def _worker_of(self, session_id: str) -> str | None:
        found = names([self.r.hget(self.keys.session(session_id), "worker")])
        return found[0] if found else None

    def _janitor_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            self._janitor_pass()

    def _janitor_pass(self) -> None:
        """Heartbeat, live workers, the no-worker notice, reclaim. One failed pass is logged and the next runs
        (a bad entry in Redis never stops the thread, nor this node's start, which runs a pass first)."""
        try:
            self.queue.ensure_group()
            self.nodes = self.queue.beat(self.keys.nodes, self.node, None, self.keys.answers(self.node))
            self.workers = self.queue.alive(self.keys.workers)
            if self.workers:
                self._worker_seen = time.monotonic()
                model, device = self.r.hmget(self.keys.worker(self.workers[0]), "model", "device")
                self.model, self.device = label(model) or self.model, label(device) or self.device
            elif time.monotonic() - self._worker_seen >= self.settings.no_worker_notice_s:
                self._no_worker()
            self.queue.reclaim(self.node)
        except redis.RedisError as error:
            log.info("web node %s: Redis heartbeat failed: %s", self.node, type(error).__name__)
        except Exception:
            log.exception("web node %s: janitor pass failed; the next in %.1f s", self.node,
                          self.settings.heartbeat_s)

    def _no_worker(self) -> None:
        """No live worker for `no_worker_notice_s`: every waiting session ends with a `busy` error that says so
        (taken out of the line in the cancel script, so a worker that appears meanwhile never also runs it)."""
        waited = time.monotonic() - self._worker_seen
        message = NO_WORKER.format(model=self.model, waited=self.settings.no_worker_notice_s)
        ended = 0
        for session_id in session_ids(self.r.zrange(self.keys.line, 0, -1)):
            found = self.queue.cancel(session_id)
            if found is not None and found[0] == "waiting":
                self.queue.fail(session_id, ErrorCode.BUSY, message, found[1])
                ended += 1
        if ended:
            log.warning("web node %s: no live worker for %.0f s; %d waiting session(s) ended", self.node, waited,
                        ended)


def _item(session_id: str, entry: str, fields: dict[bytes, bytes]) -> FrameItem | EndItem | None:
    """A frames-stream entry, or None for one medviz did not write (logged and skipped; the session goes on)."""
    try:
        return stream_item(fields)
    except BadEntry as error:
        log.warning("session %s: frames entry %s skipped: %s", session_id, entry, error)
        return None
