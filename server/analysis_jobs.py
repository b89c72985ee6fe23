"""On-demand analysis jobs: one per (source, job id), cached, cancellable, run on the model's worker.

Owns: `AnalysisJobs`: `request` checks a request against its source, answers a repeat from the
cache (or from the source's recording), joins a running job, or queues a new one on the worker
(worker.py says when it runs; a job asked to give way to a live session stops, tells its askers
`queued` again and waits at the head of its line) for the asking connection (BusyError, and
nothing queued, past the worker's bounds per connection and in total: only new jobs count, a
repeat or a join costs nothing); `cancel` stops a job for every socket waiting on it and gives
its place in the line back; `forget` drops a source's jobs when its session expires. A finished
job's `done` frame is appended to the source's recording on the worker thread (the thread that
writes recordings), once per job id and within `results_max_bytes` per recording
(recording.summary.append_result; never a kind the source keeps out of it, `unrecorded`: an
identified export of a session whose recording is de-identified; a result the recording already
holds is answered from it, not computed or appended again; a refusal is logged and the askers get
the result all the same; `record=False` on a scaled-out web node, whose `compute` asks a worker,
which appends it: scale/remote_analyses.py). `withdraw` takes back a closing socket's wish for an answer, and a job
nobody waits for any more is cancelled, so a closed tab does not keep the model's worker busy.
Replies are callables `reply(frame, final)` that must not block (the routes hand them to the
event loop). Does not own what a job computes (medviz_core/analyses/kinds.py) or sockets
(sockets/live.py, sockets/replay.py).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from medviz_core.analyses.compute import DEIDENTIFIED, AnalysisSource, job_id
from medviz_core.analyses.kinds import check_request, compute
from medviz_core.engine.api import AnalysisEngine
from medviz_core.errors import Cancelled, MedvizError, RequestError
from medviz_core.recording.file import in_words
from medviz_core.recording.summary import append_result, recorded
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame, AnalysisResult, AnalysisStatus
from medviz_core.wire.server_frames import decode
from server.recording_disk import disk_state

log = logging.getLogger("medviz.server")

Reply = Callable[[AnalysisFrame, bool], None]  # (the job's state, whether it is its last word); the asker adds its id
# A scaled-out node's compute (scale/remote_analyses.py): analyses.kinds.compute's arguments but the engine (the node
# has none), and whether the source session's owner asked (its job may run between that session's steps).
Compute = Callable[[AnalysisSource, AnalyzeRequest, threading.Event, bool], AnalysisResult]
FINAL = ("done", "cancelled", "error")


class TaskLine(Protocol):
    """The worker's queue of tasks, as AnalysisJobs uses it (worker.GenerationWorker)."""

    def check_room(self, owner: str) -> None: ...

    def run_task(self, owner: str, run: Callable[[], None], source: str, preempt: Callable[[], bool],
                 between_steps: Callable[[], bool]) -> Any: ...

    def requeue_task(self, task: Any) -> None: ...

    def drop_task(self, task: Any) -> None: ...


@dataclass
class _Job:
    id: str
    source: AnalysisSource
    request: AnalyzeRequest
    replies: list[Reply]
    cancel: threading.Event = field(default_factory=threading.Event)
    status: AnalysisStatus = "queued"
    frame: AnalysisFrame | None = None  # the done frame
    task: Any = None  # its place in the worker's line while queued
    yielded: bool = False  # it has given way to a live session once (it will not again)
    yielding: bool = False  # asked to give way now: its cancel is set, but it is not cancelled
    owner_asked: bool = False  # the source session's owner asked for it: it may run between that session's steps

    def state(self, status: AnalysisStatus, message: str = "") -> AnalysisFrame:
        return AnalysisFrame(self.id, self.request.kind, self.request.index, status, message)


class AnalysisJobs:
    """Every analysis job of this server; `cache_size` done results are kept, oldest dropped first."""

    def __init__(self, engine: AnalysisEngine | None, line: TaskLine, cache_size: int = 256,
                 compute: Compute | None = None, record: bool = True,
                 results_max_bytes: int = 64 * 1024 * 1024) -> None:
        self.engine = engine
        self.results_max_bytes = results_max_bytes  # results appended to one recording, in bytes
        self.line = line
        self.cache_size = cache_size
        self.compute = compute  # None: kinds.compute; a scaled-out node asks a worker (scale/remote_analyses)
        self.record = record  # append done results to the source's recording (False where a worker does)
        self.runs = 0  # jobs computed (tests check that a repeat does not add one)
        self._jobs: OrderedDict[tuple[str, str], _Job] = OrderedDict()
        self._lock = threading.Lock()

    def request(self, source: AnalysisSource, request: AnalyzeRequest, reply: Reply, asker: str,
                owner: bool = False) -> str:
        """Answer or queue a request for connection `asker`; returns its job id. RequestError if the
        source cannot answer it, BusyError if it would be a new job past the worker's bounds. `owner`: the
        asker owns the live session the source is (only its jobs run between that session's steps; a
        watcher's or a replay viewer's wait until no session runs or waits)."""
        request = request.without_id()  # equal requests are one job, whoever asks
        check_request(source, request)
        job = _Job(job_id(request), source, request, [reply], owner_asked=owner)
        key = (source.key, job.id)
        with self._lock:
            known = self._jobs.get(key)
            if known is None and job.id in source.recorded and request.kind not in source.unrecorded:
                recorded = decode(source.recorded[job.id])
                if isinstance(recorded, AnalysisFrame):
                    known = _Job(job.id, source, request, [], status="done", frame=recorded)
                    self._remember(key, known)
            if known is not None:
                self._jobs.move_to_end(key)
                if known.status != "done":
                    known.replies.append(reply)
                    known.owner_asked = known.owner_asked or owner
                answer = ((known.frame, True) if known.status == "done" and known.frame is not None
                          else (known.state(known.status), False))
            else:
                self.line.check_room(asker)  # only the event loop queues, so the room is still there below
                self._jobs[key] = job
                answer = (job.state("queued"), False)
        reply(*answer)
        if known is None:
            job.task = self.line.run_task(asker, lambda: self._run(key, job), source.key, lambda: self._yield(job),
                                          lambda: job.owner_asked)
        return job.id

    def _yield(self, job: _Job) -> bool:
        """Ask a running job to give way to a live session (once); it restarts from its line later."""
        with self._lock:
            if job.status != "running" or job.yielded:
                return False
            job.yielded = job.yielding = True
            job.cancel.set()
            return True

    def cancel(self, source_key: str, job: str, reply: Reply) -> None:
        """Cancel a queued or running job for the socket whose `reply` asked for it; RequestError if this source
        has no such unfinished job that this socket asked for (a job id is computable from its request, so
        anyone could name it: only its askers may cancel it).

        The socket's requests end `cancelled`; the job goes on for its other askers, and is stopped when
        nobody else waits for it. A stopped job leaves the table at once, so a request that comes after the
        cancel starts a new job instead of joining one that is stopping.
        """
        key = (source_key, job)
        with self._lock:
            found = self._jobs.get(key)
            if found is None or found.status in FINAL or reply not in found.replies:
                raise RequestError(f"no unfinished analysis job {job[:64]!r} asked by this connection here")
            alone = all(r is reply for r in found.replies)
            if not alone:  # others still wait for it: only this socket's requests end
                asked = found.replies.count(reply)
                found.replies = [r for r in found.replies if r is not reply]
            else:
                found.yielding = False
                found.cancel.set()
                del self._jobs[key]
            queued = found.status == "queued"
        if not alone:
            for _ in range(asked):
                reply(found.state("cancelled", "cancelled by a client"), True)
        elif queued:  # not started: answer now, and give its place in the line back
            self._drop(found)
            self._finish(key, found, "cancelled", "cancelled by a client")

    def withdraw(self, source_key: str, job: str, reply: Reply) -> None:
        """A socket that asked for `job` is gone; cancel the job if nobody else waits for it.

        Nobody is left to tell, so the job ends silently and leaves the table at once (a
        later request starts afresh); a running one stops at its next cancel check.
        """
        key = (source_key, job)
        with self._lock:
            found = self._jobs.get(key)
            if found is None or found.status in FINAL:
                return
            found.replies = [r for r in found.replies if r is not reply]
            if found.replies:
                return
            found.yielding = False
            found.cancel.set()
            queued = found.status == "queued"
            found.status = "cancelled"
            del self._jobs[key]
        if queued:
            self._drop(found)

    def forget(self, source_key: str) -> None:
        """Drop a source's jobs (its session expired), its de-identified view's too, cancelling those not finished."""
        with self._lock:
            keys = [key for key in self._jobs if key[0] in (source_key, source_key + DEIDENTIFIED)]
            dropped = [self._jobs.pop(key) for key in keys]
        for job in dropped:
            job.yielding = False
            job.cancel.set()
            if job.status == "queued":
                self._drop(job)

    def _drop(self, job: _Job) -> None:
        if job.task is not None:
            self.line.drop_task(job.task)

    def _remember(self, key: tuple[str, str], job: _Job) -> None:
        self._jobs[key] = job
        done = [k for k, j in self._jobs.items() if j.status == "done"]
        for old in done[: max(0, len(done) - self.cache_size)]:
            del self._jobs[old]

    def _run(self, key: tuple[str, str], job: _Job) -> None:
        """On the worker thread: compute, record, answer."""
        with self._lock:
            if job.status != "queued" or job.cancel.is_set():
                return
            job.status = "running"
            replies = list(job.replies)
        for reply in replies:
            reply(job.state("running"), False)
        if self._from_recording(key, job):
            return
        try:
            self.runs += 1
            result = (compute(self.engine, job.source, job.request, job.cancel) if self.compute is None
                      else self.compute(job.source, job.request, job.cancel, job.owner_asked))
            if job.cancel.is_set():
                raise Cancelled("cancelled while it finished")
        except Cancelled:
            if not self._requeue(job):  # stopped to give way to a live session, or cancelled
                self._finish(key, job, "cancelled", "cancelled by a client")
            return
        except MedvizError as error:
            self._finish(key, job, "error", error.message)
            return
        except Exception as error:
            log.error("analysis %s failed: %s", job.id, type(error).__name__, exc_info=True)
            self._finish(key, job, "error", f"the analysis failed ({type(error).__name__})")
            return
        job.frame = AnalysisFrame(job.id, job.request.kind, job.request.index, "done", "", result)
        if self._records(job):
            assert job.source.recording is not None  # _records says so
            self._record(job.source.recording, job.id, job.frame.to_wire())
        self._finish(key, job, "done")

    def _from_recording(self, key: tuple[str, str], job: _Job) -> bool:
        """Answer a job from the result its recording already holds (appended since its source was read)."""
        if not self._records(job):
            return False
        assert job.source.recording is not None  # _records says so
        try:
            data = recorded(job.source.recording, job.id)
            frame = decode(data) if data is not None else None
        except (OSError, MedvizError):
            return False
        if not isinstance(frame, AnalysisFrame) or frame.status != "done":
            return False
        job.frame = frame
        self._finish(key, job, "done")
        return True

    def _records(self, job: _Job) -> bool:
        """Whether a job's result belongs in its source's recording (not a kind the source keeps out of it: an
        identified export of a de-identified recording's session)."""
        return job.source.recording is not None and self.record and job.request.kind not in job.source.unrecorded

    def _record(self, path: Path, job: str, frame: bytes) -> None:
        """Append a done result to its recording, within the recording's bound; a refusal is logged, never raised
        (the askers get the result all the same)."""
        try:
            appended = append_result(path, job, frame, self.results_max_bytes)
        except OSError as error:
            disk_state(path.parent).failed(in_words(error))
            log.warning("analysis %s not recorded: %s", job, in_words(error))
        except MedvizError as error:  # ResultsFull past the bound, RecordingDamaged, ...
            log.warning("analysis %s not recorded: %s", job, error.message)
        else:
            if appended.torn:
                log.warning("recording %s: cut off a torn last frame (%d bytes) before appending analysis %s",
                            path.stem, appended.torn, job)
            if appended.appended:
                disk_state(path.parent).succeeded()

    def _requeue(self, job: _Job) -> bool:
        """A job that stopped to give way to a live session waits again, at the head of its line."""
        with self._lock:
            if not job.yielding:
                return False
            job.yielding = False
            job.cancel = threading.Event()
            job.status = "queued"
            replies = list(job.replies)
        for reply in replies:
            reply(job.state("queued", "waiting for a live session to finish"), False)
        self.line.requeue_task(job.task)
        return True

    def _finish(self, key: tuple[str, str], job: _Job, status: AnalysisStatus, message: str = "") -> None:
        with self._lock:
            if job.status in FINAL:
                return
            job.status = status
            replies, job.replies = job.replies, []
            if self._jobs.get(key) is job:
                del self._jobs[key]
                if status == "done":
                    self._remember(key, job)
        frame = job.frame if status == "done" and job.frame is not None else job.state(status, message)
        for reply in replies:
            reply(frame, True)
