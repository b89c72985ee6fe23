"""Analyses on a stateless web node: AnalysisJobs as ever, its computing done by a worker through Redis.

Owns: `RemoteAnalyses`, which gives the web node's `AnalysisJobs` (joins, cache, bounds per
connection and per node, answers with each request's own id: unchanged) a `line` (a
FairQueue served by a few dispatch threads, each waiting on one remote job) and a
`compute` that ships the job to a worker's inbox (`analyze`: this node, a token, the
source key, the request's bytes) and blocks until the worker's final answer comes back on
this node's answer stream, which one reader thread hands out by token. Where it goes: a
session's own worker while it is alive (so the analysis runs between that session's
frames, as in one process), otherwise the live worker the source key hashes to (so
repeats meet that worker's cache). A cancelled or withdrawn job sends `withdraw`: the
worker stops it if no other node waits for it (a cancel on one node does not cancel
another node's askers). A worker that dies, or a Redis that is lost, ends the job with an
error; nothing waits forever. Does not own what a job computes (analyses/kinds.py) or the
worker's side (scale/worker.py).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
from collections.abc import Callable

import redis

from medviz_core.analyses.compute import AnalysisSource
from medviz_core.errors import BusyError, Cancelled, MedvizError
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame, AnalysisResult
from medviz_core.wire.server_frames import decode
from server.fair_queue import FairQueue
from server.scale.entries import Answer, BadEntry, answer
from server.scale.keys import Fields, Keys, connect, follow
from server.settings import Settings
from server.worker import FairLine, Task

log = logging.getLogger("medviz.server")

DISPATCHERS = 8  # remote jobs one web node waits on at once
WAIT_S = 0.25  # how often a waiting job looks at its cancel flag and its worker's heartbeat
WORKER_GONE = "the generation worker computing this analysis stopped; ask again"
NO_WORKER = "no generation worker is running; ask again shortly"


class RemoteAnalyses(FairLine):
    """The line and the compute of one web node's AnalysisJobs."""

    def __init__(self, settings: Settings, keys: Keys, node: str, worker_of: Callable[[str], str | None],
                 alive: Callable[[], list[str]]) -> None:
        self.settings, self.keys, self.node = settings, keys, node
        self.worker_of, self.alive = worker_of, alive  # the session's worker (or None); the live workers
        self.r = connect(settings.redis_url or "")
        self._tasks: FairQueue[Task] = FairQueue(per_owner=settings.analysis_per_connection,
                                                 total=settings.analysis_queue)
        self._lock = threading.Condition()
        self._waiting: dict[str, queue.Queue[Answer]] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._dispatch, name="medviz-dispatch", daemon=True)
                         for _ in range(DISPATCHERS)]
        self._threads.append(threading.Thread(target=self._answers, name="medviz-answers", daemon=True))
        for thread in self._threads:
            thread.start()

    def _dispatch(self) -> None:
        """A dispatch thread: takes the next task of the line (worker.FairLine) by turns and waits on it."""
        while True:
            with self._lock:
                while not len(self._tasks) and not self._stop.is_set():
                    self._lock.wait()
                if self._stop.is_set():
                    return
                task = self._tasks.pop()
            if task is not None:
                try:
                    task.run()
                except Exception as error:
                    log.error("a remote analysis failed: %s", type(error).__name__, exc_info=True)

    # -- the compute ------------------------------------------------------------------------

    def compute(self, source: AnalysisSource, request: AnalyzeRequest, cancel: threading.Event,
                owner: bool) -> AnalysisResult:
        """Ask a worker and wait for its final answer: the result, or Cancelled / MedvizError. `owner`: the
        session's owner asked (the worker may run it between that session's steps)."""
        worker = self._route(source.key)
        token, answers = secrets.token_hex(8), queue.Queue[Answer]()
        self._waiting[token] = answers
        try:
            self._send(worker, {"cmd": "analyze", "node": self.node, "token": token, "source": source.key,
                                "request": request.to_wire(), "owner": "1" if owner else "0"})
            while True:
                if cancel.is_set():
                    self._send(worker, {"cmd": "withdraw", "token": token})
                    raise Cancelled("cancelled by a client")
                try:
                    got = answers.get(timeout=WAIT_S)
                except queue.Empty:
                    if worker not in self.alive():
                        raise MedvizError(WORKER_GONE) from None
                    continue
                if got.final:
                    return _result(got)
        finally:
            self._waiting.pop(token, None)

    def _route(self, key: str) -> str:
        alive = self.alive()
        kind, _, name = key.partition(":")
        own = self.worker_of(name) if kind == "session" else None
        if own is not None and own in alive:
            return own
        if not alive:
            raise BusyError(NO_WORKER)
        return max(alive, key=lambda worker: hashlib.sha1(f"{worker}|{key}".encode()).digest())

    def _send(self, worker: str, fields: dict[str, str | bytes]) -> None:
        try:
            self.r.xadd(self.keys.inbox(worker), fields, maxlen=10_000)  # type: ignore[arg-type]
        except redis.RedisError as error:
            raise MedvizError(f"the session store (Redis) is unreachable ({type(error).__name__}); ask again "
                              "shortly") from None

    def _answers(self) -> None:
        follow(connect(self.settings.redis_url or ""), self.keys.answers(self.node), self._stop, self._hand_out,
               count=256, block_ms=1000)  # a new node name: its stream is new

    def _hand_out(self, fields: Fields) -> None:
        try:
            got = answer(fields)
        except BadEntry as error:
            log.warning("web node %s: analysis answer skipped: %s", self.node, error)
            return
        waiting = self._waiting.get(got.token)
        if waiting is not None:
            waiting.put(got)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(5)


def _result(got: Answer) -> AnalysisResult:
    if got.frame is None:  # refused by the worker before it became a job
        error = MedvizError(got.message)
        error.code = got.code or error.code
        raise error
    try:
        frame = decode(got.frame)
    except MedvizError:
        raise
    except Exception:  # bytes no worker wrote: an error for this job, never a dead dispatch thread
        raise MedvizError("a worker's answer could not be read") from None
    if not isinstance(frame, AnalysisFrame):
        raise MedvizError(f"a worker answered with a {frame.type!r} frame; expected an analysis frame")
    if frame.status == "done" and frame.result is not None:
        return frame.result
    if frame.status == "cancelled":
        raise Cancelled(frame.message or "cancelled")
    raise MedvizError(frame.message or f"the analysis ended {frame.status}")
