"""A generation worker that takes its jobs from Redis: `medviz worker`, and each Ray Serve replica.

Owns: `RedisWorker`: one model and one `GenerationWorker` (worker.py: the run, the recording
written once into the shared recordings folder, analyses between frames, sessions first),
fed one job at a time from `P:jobs` through the consumer group; a `Publisher` thread that
appends every frame (bytes unchanged) and every analysis answer to Redis in order, so the
model never waits on the network; an inbox thread for the commands addressed to this
worker (cancel a session, analyze, withdraw an analysis); a heartbeat thread (alive and
idle or not, holding its job's entry, reclaiming abandoned ones: scale/queue.py). Analyses
run in an `AnalysisJobs` of its own, on the frames read back from Redis (a session) or from
the shared folder (a recording): scale/worker_sources.py. Redis lost mid-session: the run is
cancelled, and once Redis answers again the session ends with an error frame if its keys
survived; then the worker takes jobs again. Does not own the queue's steps
(scale/queue.py) or web nodes (scale/sessions.py).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from medviz_core.analyses.compute import job_id
from medviz_core.engine.api import StreamEngine
from medviz_core.errors import MedvizError
from medviz_core.recording.file import recording_path
from medviz_core.wire.client_frames import AnalyzeRequest, StartRequest, parse_client_frame
from medviz_core.wire.codes import ErrorCode
from medviz_core.wire.results import AnalysisFrame
from server.analysis_jobs import AnalysisJobs, Reply
from server.broadcast import ENDED
from server.fair_queue import FairQueue
from server.scale.auth import require_auth
from server.scale.entries import Analyze, BadEntry, Cancel, JobEntry, inbox_command, job_entry, job_session
from server.scale.keys import GROUP, Fields, Keys, connect, follow, read_entries, worker_name
from server.scale.queue import RedisQueue
from server.scale.worker_sources import WorkerSources
from server.settings import Settings
from server.worker import GenerationWorker, Job, Task

log = logging.getLogger("medviz.worker")

BLOCK_MS = 1000  # a blocking read returns at least this often, so stop() is prompt
ANSWERS_KEPT = 10_000  # entries of a web node's answer stream kept (approximately)
LOST_REDIS = "the generation worker lost its connection to the session store (Redis) mid-session; start it again"
JOB_FAILED = "the generation worker failed to run this session (its log says why); start it again"
Op = tuple[Callable[[Any], None], "threading.Event | None"]


class Publisher:
    """Appends to Redis in order on its own thread, in pipelines of whatever is waiting; a failed batch
    calls `on_lost` (the current job stops) and the next batch is tried afresh."""

    def __init__(self, client: redis.Redis, execute: Callable[[Any], object]) -> None:
        self.r = client
        self.execute = execute  # RedisQueue.execute: a batch's scripts by sha, reloaded if Redis lost them
        self.on_lost: Callable[[], None] = lambda: None
        self._ops: queue.Queue[Op | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="medviz-publisher", daemon=True)
        self._thread.start()

    def put(self, op: Callable[[Any], None]) -> None:
        self._ops.put((op, None))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything put so far was sent (or failed)."""
        done = threading.Event()
        self._ops.put((lambda pipe: None, done))
        done.wait(timeout)

    def stop(self) -> None:
        self._ops.put(None)
        self._thread.join(10)

    def _loop(self) -> None:
        while True:
            first = self._ops.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 256 and not self._ops.empty():
                op = self._ops.get_nowait()
                if op is None:
                    self._send(batch)
                    return
                batch.append(op)
            self._send(batch)

    def _send(self, batch: list[Op]) -> None:
        try:
            pipe = self.r.pipeline(transaction=False)
            for op, _ in batch:
                op(pipe)
            self.execute(pipe)
        except redis.RedisError as error:
            log.warning("could not write to Redis: %s", type(error).__name__)
            self.on_lost()
        except Exception:  # a bug in one batch: logged, that job stops, the thread goes on
            log.exception("could not write a batch to Redis")
            self.on_lost()
        for _, done in batch:
            if done is not None:
                done.set()


@dataclass
class _Current:
    entry: str  # its entry in P:jobs
    session: str
    job: Job
    lost: bool = False  # Redis failed under it, or another took its entry: its frames go nowhere


class RedisWorker:
    """Takes jobs from Redis until stopped; `run` blocks, `start` runs it on a thread."""

    def __init__(self, engine: StreamEngine, settings: Settings, name: str | None = None) -> None:
        if not settings.redis_url:
            raise MedvizError("a Redis worker needs settings.redis_url (medviz worker --redis URL)")
        self.settings, self.keys = settings, Keys(settings.redis_prefix)
        self.name = name or worker_name("worker")
        self.facts = engine.facts
        require_auth(settings.redis_url, settings.redis_insecure)
        self.r = connect(settings.redis_url)
        self.queue = RedisQueue(self.r, self.keys, settings)
        self.publisher = Publisher(connect(settings.redis_url), self.queue.execute)
        tasks: FairQueue[Task] = FairQueue(per_owner=settings.analysis_queue, total=4 * settings.analysis_queue)
        self.generation = GenerationWorker(engine, 1, tasks, min_free_mb=settings.recordings_min_free_mb)
        self.analyses = AnalysisJobs(engine, self.generation, settings.analysis_cache,
                                     results_max_bytes=settings.recording_results_max_bytes)
        self.sources = WorkerSources(connect(settings.redis_url), self.keys, settings.recordings,
                                     self.analyses.forget, keep_identity=settings.recordings_keep_identity)
        self.served = 0  # jobs run to their end (tests read it)
        self._current: _Current | None = None
        self._busy = False  # claiming or running a job (not idle)
        self._cancelled: deque[str] = deque(maxlen=256)  # sessions cancelled just before their job started
        self._asked: dict[str, tuple[str, str, Reply]] = {}  # token -> (source key, job, reply)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> RedisWorker:
        thread = threading.Thread(target=self.run, name=f"medviz-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def run(self) -> None:
        """Serve jobs until `stop`. Whatever fails in one job or one read is logged and the loop goes on; should
        the loop itself end otherwise, the worker stops whole (its heartbeats too: never a half-alive worker that
        says it is alive and takes no job) and the error is raised to the caller (`medviz worker` exits, Ray's
        health check replaces the replica)."""
        log.info("worker %s: model %s on %s, taking jobs from Redis", self.name, self.facts.name, self.facts.device)
        for target in (self._inbox, self._heartbeats):
            helper = threading.Thread(target=target, name=f"medviz-{target.__name__.strip('_')}", daemon=True)
            helper.start()
            self._threads.append(helper)
        try:
            self._loop()
        except BaseException:
            log.critical("worker %s: its job loop ended by an error; stopping the worker", self.name, exc_info=True)
            raise
        finally:
            self._stop.set()

    def _loop(self) -> None:
        fresh = True
        while not self._stop.is_set():
            try:
                if fresh:
                    self.queue.ensure_group()
                    self._beat()
                    fresh = False
                got = self.r.xreadgroup(GROUP, self.name, {self.keys.jobs: ">"}, count=1, block=BLOCK_MS)
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):  # the group went with a Redis that lost its data
                    raise
                fresh = True
                continue
            except (redis.ConnectionError, redis.TimeoutError) as error:
                log.warning("worker %s: Redis unreachable (%s); retrying", self.name, type(error).__name__)
                self._stop.wait(0.5)
                fresh = True
                continue
            for entry, fields in read_entries(got):
                try:
                    self._serve(entry, fields)
                except redis.RedisError as error:  # a job it could not start is reclaimed (scale/queue.py)
                    log.warning("worker %s: Redis failed while starting a job (%s)", self.name, type(error).__name__)
                    fresh = True
                except Exception:
                    log.exception("worker %s: job entry %s failed; taking the next job", self.name, entry)
                    self._give_up(entry, fields)

    def halt(self) -> None:
        """Stop taking jobs; the run in hand ends cancelled (its viewers get its end frame)."""
        self._stop.set()
        current = self._current
        if current is not None:
            self.generation.cancel(current.job)

    def stop(self, timeout: float = 10.0) -> None:
        self.halt()
        for thread in self._threads:
            thread.join(timeout)
        self.generation.stop(timeout)
        self.publisher.stop()

    # -- one job ---------------------------------------------------------------------------

    def _serve(self, entry: str, fields: Fields) -> None:
        try:
            job = job_entry(fields, self.settings.image_budget_bytes)
        except BadEntry as error:
            return self.queue.reject(entry, fields, error)
        self._busy = True  # before the claim: a heartbeat in between must not say idle again
        try:
            if self.queue.claim(job.session, self.name):
                self._run(entry, job)
            else:  # cancelled while it waited (or not a session in the line)
                self.queue.drop_job(entry)
        finally:
            self._busy = False
            self._current = None
        self._beat()

    def _give_up(self, entry: str, fields: Fields) -> None:
        """After a job failed by a bug: its session ends with an `internal` error (if it has one), the entry is
        acked; never a session left `running` on a worker that moved on."""
        session_id = job_session(fields)
        try:
            if session_id is None:
                self.queue.drop_job(entry)
            else:
                self.queue.fail(session_id, ErrorCode.INTERNAL, JOB_FAILED, entry)
        except redis.RedisError as error:  # then the reclaim rule ends it (scale/queue.py)
            log.warning("worker %s: could not end job entry %s (%s)", self.name, entry, type(error).__name__)

    def _run(self, entry: str, job: JobEntry) -> None:
        session_id = job.session
        self.queue.announce()
        try:
            request = parse_client_frame(job.request, self.settings.limits, accept=("start",))
            assert isinstance(request, StartRequest)  # parse_client_frame accepted only "start"
        except MedvizError as error:
            self.queue.fail(session_id, error.code, error.message, entry)
            return
        if job.from_pacs:  # the web node's own mark, from the job entry (never read from the request's bytes)
            request = replace(request, from_pacs=True)
        done = threading.Event()
        current = self._current = _Current(entry, session_id, self._job(session_id, request, job.work, done))
        self.publisher.on_lost = lambda: self._lose(current)
        if session_id in self._cancelled:
            current.job.cancel.set()
        log.info("worker %s: session %s started", self.name, session_id)
        self.generation.submit(current.job)
        while not done.wait(0.5):
            if self._stop.is_set():
                self.generation.cancel(current.job)
        if not current.lost:
            self.publisher.put(lambda pipe: self.queue.finish(pipe, session_id, current.job.close or ENDED, entry))
        self.publisher.flush()
        if current.lost:
            self._recover(current)
        self._current = None
        self.served += 1

    def _job(self, session_id: str, request: StartRequest, work: int, done: threading.Event) -> Job:
        target = recording_path(self.settings.recordings, session_id) if request.record else None

        def emit(data: bytes, keep: bool) -> None:  # `queued` frames (keep False) come from the Redis line instead
            current = self._current
            if keep and current is not None and not current.lost:
                self.publisher.put(lambda pipe: self.queue.frame(pipe, session_id, data, True))

        def keep_source(data: bytes) -> None:
            self.publisher.put(lambda pipe: pipe.set(self.keys.source(session_id), data,
                                                     ex=int(self.settings.session_ttl_s)))

        files = request.images
        return Job(session=session_id, request=replace(request, images=tuple(b"" for _ in files)), images=files,
                   emit=emit, done=done.set, keep=keep_source, recording=target,
                   image_work=work, identity=self.settings.recording_identity())

    def _lose(self, current: _Current) -> None:
        if not current.lost:
            current.lost = True
            self.generation.cancel(current.job)

    def _recover(self, current: _Current) -> None:
        """After Redis failed mid-session: wait for it, then end the session with an error if its keys survived."""
        while not self._stop.is_set():
            try:
                self.r.ping()
                self.queue.ensure_group()
                state, worker = self.r.hmget(self.keys.session(current.session), "state", "worker")
                if state == b"running" and worker == self.name.encode():
                    self.queue.fail(current.session, ErrorCode.INTERNAL, LOST_REDIS, current.entry)
                return
            except redis.RedisError:
                self._stop.wait(0.5)

    # -- heartbeats and commands -----------------------------------------------------------

    def _beat(self) -> None:
        info: dict[FieldT, EncodableT] = {
            "model": self.facts.name, "device": self.facts.device, "host": socket.gethostname(), "pid": os.getpid()}
        self.r.hset(self.keys.worker(self.name), mapping=info)
        self.queue.beat(self.keys.workers, self.name, not self._busy, self.keys.worker(self.name),
                        self.keys.inbox(self.name))

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self._beat()
                current = self._current
                if current is not None and not current.lost and not self.r.xclaim(
                        self.keys.jobs, GROUP, self.name, 0, [current.entry], justid=True):
                    log.warning("worker %s: session %s was taken over; stopping it", self.name, current.session)
                    self._lose(current)
                self.queue.reclaim(self.name)
            except redis.RedisError as error:
                log.debug("heartbeat failed: %s", type(error).__name__)
            except Exception:  # a bug in one beat: logged; the next beat is tried (never a silent dead thread)
                log.exception("worker %s: heartbeat failed", self.name)

    def _inbox(self) -> None:
        follow(connect(self.settings.redis_url or ""), self.keys.inbox(self.name), self._stop, self._obey,
               count=64, block_ms=BLOCK_MS)  # a command that fails is logged there and the next one is read

    def _obey(self, fields: Fields) -> None:
        try:
            command = inbox_command(fields)
        except BadEntry as error:
            log.warning("worker %s: inbox command skipped: %s", self.name, error)
            return
        if isinstance(command, Cancel):
            self._cancelled.append(command.session)
            current = self._current
            if current is not None and current.session == command.session:
                self.generation.cancel(current.job)
        elif isinstance(command, Analyze):
            self._analyze(command.node, command.token, command.source, command.request, owner=command.owner)
        else:
            asked = self._asked.pop(command.token, None)
            if asked is not None:
                self.analyses.withdraw(*asked)

    def _analyze(self, node: str, token: str, source_key: str, data: bytes, owner: bool = False) -> None:
        reply = self._reply(node, token)
        try:
            request = parse_client_frame(data, self.settings.limits, accept=("analyze",))
            assert isinstance(request, AnalyzeRequest)  # parse_client_frame accepted only "analyze"
            source = self.sources.get(source_key)
            self._asked[token] = (source.key, job_id(request), reply)
            self.analyses.request(source, request, reply, asker=node, owner=owner)
        except MedvizError as error:
            self._asked.pop(token, None)
            self._refuse(node, token, error)
        except Exception:  # never an asker left waiting on a job that failed to start
            log.exception("worker %s: analysis %s failed to start", self.name, token)
            self._asked.pop(token, None)
            self._refuse(node, token, MedvizError("the generation worker failed to start this analysis (its log "
                                                  "says why)"))

    def _reply(self, node: str, token: str) -> Reply:
        def reply(frame: AnalysisFrame, final: bool) -> None:
            if final:
                self._asked.pop(token, None)
            answer = {b"token": token.encode(), b"frame": frame.to_wire(), b"final": b"1" if final else b"0"}
            self.publisher.put(lambda pipe: pipe.xadd(self.keys.answers(node), answer, maxlen=ANSWERS_KEPT))

        return reply

    def _refuse(self, node: str, token: str, error: MedvizError) -> None:
        answer = {b"token": token.encode(), b"final": b"1", b"code": str(error.code).encode(),
                  b"message": error.message.encode("utf-8")}
        self.publisher.put(lambda pipe: pipe.xadd(self.keys.answers(node), answer, maxlen=ANSWERS_KEPT))
