"""The generation queue on Redis, as web nodes and workers both use it: one set of atomic steps.

Owns: `RedisQueue`: `submit` (the cap, the session's keys, the job entry in `P:jobs`: its
session, request bytes, image work and `pacs` mark, the server's own word that it retrieved
the images from its PACS, which the request's bytes never carry; the
position: 0 when an idle worker will take it at once), `claim` (a worker takes a session
out of the line; a session cancelled while waiting cannot be claimed, and a claimed one
cannot be cancelled as waiting: one script each, so they never both win), `cancel`,
`announce` (a `queued` frame with its position to every waiting session, after any change
to the line), `finish` / `fail` (the end marker after the last frame, the keys' TTL:
`linger_s`), `reclaim` (the rule for a job whose worker died, below), and the heartbeats
of workers and web nodes (sorted sets scored by expiry, in Redis's own clock).

The reclaim rule: a worker holds its job's entry in the group's pending list and renews it
every `heartbeat_s` (XCLAIM by itself). An entry nobody renewed for `reclaim_s` is taken
by whoever looks first (every web node and every worker does, every `heartbeat_s`, with
XAUTOCLAIM): if its session never started (still in the line), it goes back into the
stream for another worker; if it started, the session ends with an `internal` error frame
that says its worker stopped (viewers close 4500); a finished one is just acknowledged.
Either way nobody waits forever.

Pipelines (a worker's batch of frames, a node's counts) run their scripts by sha alone
(`execute`): no SCRIPT EXISTS round trip before each batch; after a Redis that lost its
script cache (a restart), the scripted commands it refused are loaded and run again, in
order. Does not own the frames' fan-out (scale/sessions.py) or running jobs (scale/worker.py).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from medviz_core.wire.codes import ErrorCode, close_code_for
from medviz_core.wire.server_frames import EndFrame, ErrorFrame, QueuedFrame
from server.broadcast import ENDED, Close
from server.scale.entries import BadEntry, count, job_entry, job_session, names
from server.scale.keys import END, FRAME, GROUP, KEPT, REASON, Fields, Keys, end_entry, frame_entry, range_entries, text
from server.settings import Settings
from server.worker import WAITED

log = logging.getLogger("medviz.server")

WORKER_STOPPED = "the generation worker running this session stopped before it finished; start the session again"
MALFORMED_JOB = "this session's job entry in the session store (Redis) is malformed; start the session again"
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
_SUBMIT = _NOW + """
local waiting = redis.call('ZCARD', KEYS[1])
if waiting >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
local entry = redis.call('XADD', KEYS[3], '*', 'session', ARGV[1], 'request', ARGV[3], 'work', ARGV[4],
                        'pacs', ARGV[8])  -- the fields of entries.job_entry
redis.call('HSET', KEYS[4], 'state', 'queued', 'created', ARGV[6], 'record', ARGV[5], 'owner', '1', 'job', entry,
           'frames', 0)
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
local position = waiting + 1 - redis.call('ZCOUNT', KEYS[6], now, '+inf')
if position > 0 then  -- its first `queued` frame, in the same step (never after a start a worker sent)
  redis.call('XADD', KEYS[7], '*', 'f', ARGV[position + 8], 'k', '0')
  redis.call('EXPIRE', KEYS[7], ARGV[7])
end
return math.max(0, position)
"""
_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'state', 'running', 'worker', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""
_CANCEL = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'state', 'finished')
  return {'waiting', redis.call('HGET', KEYS[2], 'job') or ''}
end
return {redis.call('HGET', KEYS[2], 'state') or '', redis.call('HGET', KEYS[2], 'worker') or ''}
"""
_REQUEUE = """
-- KEYS: jobs, the session's hash; ARGV: the old entry, session id, request, work, group, pacs (0/1)
local entry = redis.call('XADD', KEYS[1], '*', 'session', ARGV[2], 'request', ARGV[3], 'work', ARGV[4],
                        'pacs', ARGV[6])
redis.call('HSET', KEYS[2], 'job', entry)
redis.call('XACK', KEYS[1], ARGV[5], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return entry
"""
_ANNOUNCE = _NOW + """
local idle = redis.call('ZCOUNT', KEYS[2], now, '+inf')
for rank, session in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local frame = ARGV[rank - idle + 2]
  if rank > idle and frame then
    local frames = ARGV[1] .. session .. ':frames'  -- Keys.frames; the fields of keys.frame_entry
    redis.call('XADD', frames, '*', 'f', frame, 'k', '0')
    redis.call('EXPIRE', frames, ARGV[2], 'NX')
  end
end
return 0
"""
_FRAME = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end  -- a session Redis lost is never re-created by a frame
redis.call('XADD', KEYS[1], '*', 'f', ARGV[1], 'k', ARGV[2])  -- the fields of keys.frame_entry
redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[2], 'frames', 1) end
return 1
"""
_FINISH = """
if ARGV[4] ~= '' then  -- the job is acked with the end, in one step: never acked without it
  redis.call('XACK', KEYS[#KEYS], ARGV[5], ARGV[4]) redis.call('XDEL', KEYS[#KEYS], ARGV[4]) end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end  -- nor does its end: viewers of a lost session get GONE
redis.call('XADD', KEYS[1], '*', 'end', ARGV[1], 'reason', ARGV[2])  -- the fields of keys.end_entry
redis.call('HSET', KEYS[2], 'state', 'finished')
for i = 1, #KEYS - 1 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end  -- the session's keys, not the job stream
return 1
"""
_NOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end  -- a web node's notes never re-create a lost session
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3], 'NX')
return 1
"""
_OWNER_CHECK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[2], ARGV[1], 0)  -- this node's own 0 first: of two nodes checking, the later sees both
redis.call('EXPIRE', KEYS[2], ARGV[2], 'NX')
return {redis.call('HMGET', KEYS[1], 'state', 'owner'), redis.call('HGETALL', KEYS[2])}
"""
_BEAT = _NOW + """
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], expiry, ARGV[1]) elseif ARGV[3] == '0' then
  redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], math.max(60000, 30 * tonumber(ARGV[2]))) end
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"""


class RedisQueue:
    """The queue's steps on one client (blocking; each is one round trip or one script)."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.r, self.keys, self.settings = client, keys, settings
        self._scripts: list[Script] = []  # every script, for `execute` to reload what Redis forgot
        self._submit = self._register(_SUBMIT)
        self._claim = self._register(_CLAIM)
        self._cancel = self._register(_CANCEL)
        self._requeue = self._register(_REQUEUE)
        self._beat = self._register(_BEAT)
        self._announce = self._register(_ANNOUNCE)
        self._frame = self._register(_FRAME)
        self._finish = self._register(_FINISH)
        self._note = self._register(_NOTE)
        self._owner_check = self._register(_OWNER_CHECK)
        # The `queued` frames of positions 1..queue_cap, for the scripts: encoded once.
        self._positions = [QueuedFrame(p).to_wire() for p in range(1, settings.queue_cap + 1)]

    def _register(self, source: str) -> Script:
        script = self.r.register_script(source)
        self._scripts.append(script)
        return script

    def execute(self, pipe: Pipeline) -> list[Any]:
        """Run a pipeline of plain and scripted commands (scripts by sha: `_run`); then the first error, if any,
        is raised. A script Redis no longer knows (its cache is lost with a restart; data kept on disk may not
        be) is loaded and the commands it refused run again on the same pipeline, in their order; the plain
        commands between them have run already, so a batch whose order matters across kinds is one script
        (`finish` acks the job in the end's script; `owner_check` writes and reads in one)."""
        commands = list(pipe.command_stack)  # execute() empties it
        replies = pipe.execute(raise_on_error=False)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            shas = {commands[i][0][1] for i in refused}  # EVALSHA sha numkeys ...
            for script in self._scripts:
                if script.sha in shas:
                    pipe.script_load(script.script)  # the same sha: it is the script's SHA1
            for i in refused:
                args, options = commands[i]
                pipe.execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            again = pipe.execute(raise_on_error=False)[-len(refused):]
            for i, reply in zip(refused, again):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    def _run(self, script: Script, keys: list[Any], args: list[Any], client: Any) -> Any:
        """One script on the client (redis-py loads it on NOSCRIPT) or into a pipeline by its sha alone
        (redis-py's own way would check SCRIPT EXISTS first, a round trip per batch; `execute` recovers)."""
        if isinstance(client, Pipeline):
            return client.evalsha(script.sha, len(keys), *keys, *args)
        return script(keys=keys, args=args, client=client)

    def ensure_group(self) -> None:
        """The consumer group of the job stream (again after a Redis that lost its data)."""
        try:
            self.r.xgroup_create(self.keys.jobs, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def submit(self, session_id: str, request: bytes, work: int, record: bool, created: float,
               from_pacs: bool = False) -> int:
        """Queue a job; its position (0: runs now), or -1 when `queue_cap` sessions already wait. `from_pacs`: this
        web node itself retrieved the request's images from its PACS (StartRequest.from_pacs, which `request`'s
        bytes never carry); the job's `pacs` field takes it to the worker.

        The script's KEYS: line, seq, jobs, the session's hash, sessions, idle, the session's frames; its ARGV: session
        id, queue_cap, request bytes, image work, record (0/1), created, session_ttl_s, pacs (0/1), then the `queued`
        frames of positions 1..queue_cap."""
        k = self.keys
        position = self._submit(keys=[k.line, k.seq, k.jobs, k.session(session_id), k.sessions, k.idle,
                                      k.frames(session_id)],
                                args=[session_id, self.settings.queue_cap, request, work, int(record), repr(created),
                                      int(self.settings.session_ttl_s), int(from_pacs), *self._positions])
        return int(position)

    def claim(self, session_id: str, worker: str) -> bool:
        k = self.keys
        return bool(self._claim(keys=[k.line, k.session(session_id), k.idle], args=[session_id, worker]))

    def cancel(self, session_id: str) -> tuple[str, str] | None:
        """None for an unknown session; ("waiting", job entry) if it was taken out of the line, else
        (its state, its worker)."""
        found = self._cancel(keys=[self.keys.line, self.keys.session(session_id)], args=[session_id])
        return None if found is None else (text(found[0]), text(found[1]))

    def cancel_waiting(self, session_id: str, entry: str) -> None:
        """The end of a session cancelled before it ran, as a waiting job's cancel in worker.py ends it."""
        ended = EndFrame.of_end(WAITED)
        pipe = self.r.pipeline(transaction=False)
        self.frame(pipe, session_id, ended.to_wire(), True)
        self.finish(pipe, session_id, ENDED, entry)
        self.execute(pipe)
        self.announce()

    def frame(self, pipe: Any, session_id: str, data: bytes, keep: bool) -> None:
        """Append a frame to the session's stream (in `pipe`), only while the session exists: after a Redis
        restart lost it, a worker's next frames must not bring back a half session that viewers would wait on."""
        entry = frame_entry(data, keep)
        self._run(self._frame, [self.keys.frames(session_id), self.keys.session(session_id)],
                  [entry[FRAME], entry[KEPT], int(self.settings.session_ttl_s)], pipe)

    def owner_check(self, session_id: str, node: str) -> tuple[str, str, dict[str, int]] | None:
        """Write this node's viewer count of the session as 0, then read the session's state, its owner flag
        and every node's count, in one script (None when the session is gone)."""
        found = self._owner_check(keys=[self.keys.session(session_id), self.keys.watchers(session_id)],
                                  args=[node, int(self.settings.session_ttl_s)])
        if found is None:
            return None
        (state, owner), counts = found
        nodes: dict[str, int] = {}
        for node, seen in zip(names(counts[::2]), counts[1::2]):
            try:
                nodes[node] = count(seen)
            except BadEntry:
                nodes[node] = 1  # unreadable: counted as watching (a session is never stopped on a bad entry)
        return text(state), text(owner), nodes

    def note(self, client: Any, session_id: str, key: str, name: str, value: str | int) -> None:
        """Set field `name` of hash `key` (the session's own or one of its keys), only while the session exists;
        `client` is this queue's client or a pipeline of it."""
        self._run(self._note, [self.keys.session(session_id), key], [name, value, int(self.settings.session_ttl_s)],
                  client)

    def finish(self, pipe: Any, session_id: str, close: Close, entry: str | None) -> None:
        """After the last frame (in `pipe`): the end marker, the state, `linger_s` on every key (all only while
        the session exists, as for its frames), and in the same script the job acked."""
        marker = end_entry(close)
        session, frames, *others = self.keys.of_session(session_id)
        self._run(self._finish, [frames, session, *others, self.keys.jobs],
                  [marker[END], marker[REASON], max(1, int(self.settings.linger_s)), entry or "", GROUP], pipe)

    def fail(self, session_id: str, code: str, message: str, entry: str | None) -> None:
        """End a session with an error frame (viewers close with its code)."""
        pipe = self.r.pipeline(transaction=False)
        self.frame(pipe, session_id, ErrorFrame(code, message).to_wire(), True)
        self.finish(pipe, session_id, (close_code_for(code), message), entry)
        self.execute(pipe)

    def announce(self) -> None:
        """A `queued` frame with its position to every waiting session (idle workers take the first ones);
        one script, so a worker claiming a session meanwhile never makes another's position wrong."""
        self._announce(keys=[self.keys.line, self.keys.idle],
                       args=[self.keys.session(""), int(self.settings.session_ttl_s), *self._positions])

    def reclaim(self, consumer: str) -> int:
        """Take over jobs nobody held for `reclaim_s` (the rule in the module docstring); how many."""
        reply = self.r.xautoclaim(self.keys.jobs, GROUP, consumer, int(self.settings.reclaim_s * 1000), "0-0", count=16)
        entries = range_entries(reply[1])
        for entry, fields in entries:
            self._abandoned(entry, fields)
        return len(entries)

    def _abandoned(self, entry: str, fields: Fields) -> None:
        if not fields:
            self.r.xack(self.keys.jobs, GROUP, entry)
            return
        try:
            job = job_entry(fields, self.settings.image_budget_bytes)
        except BadEntry as error:
            return self.reject(entry, fields, error)
        session_id = job.session
        state = text(self.r.hget(self.keys.session(session_id), "state"))
        if state == "queued" and self.r.zscore(self.keys.line, session_id) is not None:
            log.warning("session %s: its job was taken by a worker that stopped before starting it; queued again",
                        session_id)
            self._requeue(keys=[self.keys.jobs, self.keys.session(session_id)],
                          args=[entry, session_id, job.request, job.work, GROUP, int(job.from_pacs)])
        elif state == "running":
            log.warning("session %s: its worker stopped mid-session; ending it with an error", session_id)
            self.fail(session_id, ErrorCode.INTERNAL, WORKER_STOPPED, entry)
        else:
            self.drop_job(entry)

    def reject(self, entry: str, fields: Fields, error: BadEntry) -> None:
        """A job entry medviz did not write: logged in one line (its id and why, never its values), acked and
        deleted; if it names a session still waiting, that session ends with an `internal` error rather than
        wait for a job that cannot run."""
        log.warning("job entry %s skipped: %s", entry, error)
        session_id = job_session(fields)
        found = self.cancel(session_id) if session_id is not None else None
        if session_id is not None and found is not None and found[0] == "waiting":
            self.fail(session_id, ErrorCode.INTERNAL, MALFORMED_JOB, entry)
            self.announce()
        else:
            self.drop_job(entry)

    def drop_job(self, entry: str) -> None:
        """A job entry whose session needs nothing more (finished, or cancelled while it waited): acked and
        deleted, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xack(self.keys.jobs, GROUP, entry)
        pipe.xdel(self.keys.jobs, entry)
        pipe.execute()

    def beat(self, members: str, name: str, idle: bool | None, *keep: str) -> list[str]:
        """Say `name` is alive for `reclaim_s` in sorted set `members` (and idle or not, for workers);
        keeps `keep` keys alive longer; returns the live members."""
        alive = self._beat(keys=[members, self.keys.idle, *keep],
                           args=[name, int(self.settings.reclaim_s * 1000), "" if idle is None else str(int(idle))])
        return names(alive)

    def alive(self, members: str) -> list[str]:
        """The live members of a heartbeat set (names of another form are left out: never an inbox key)."""
        seconds, micros = self.r.time()
        return names(self.r.zrangebyscore(members, seconds * 1000 + micros // 1000, "+inf"))
