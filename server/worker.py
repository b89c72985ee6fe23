"""One generation thread per model: a FIFO queue with a cap, cancel, and the frames of a run.

Owns: `GenerationWorker` (a dedicated thread that runs one job at a time,
sends `queued` positions to those waiting, writes recordings, and hands every frame to
the job's `emit`, which must not block). Tasks queued with `run_task` (analysis jobs) wait
in a FairQueue (bounded per owner and in total, owners served in turn) and run on the same
thread one at a time, never inside a step, so the model only ever does one thing at a time
and a run's tokens are never touched. Live sessions come first:
- between two frames of a run, at most one task runs, and only a task about that very
  session that its owner asked for (`Task.between_steps`), and only while no other session
  waits in line: a watcher's or replay viewer's analysis never delays a live session;
- every other task waits until no session runs or waits; one already running when a
  session is submitted is asked to yield (`Task.preempt`: it stops at its next cancel
  check and goes back to the head of its owner's line; each task yields at most once), so
  a flood of analyses delays a session by at most one analysis, and usually by one
  forward pass.
A recorded session's file is written through recording_disk.SessionRecording: it must find
`min_free_mb` free to start, and a write the disk refuses (full, failing, read-only) ends that
session with an error frame naming the cause while the worker goes on to the next one.
A job's images are file bytes, decoded by the engine when it runs, under the image budget.
`history` keeps the order of work (frames and tasks) for tests and benchmarks. The event
loop never waits on torch. Does not own fan-out (broadcast.py) or who may start what
(sessions.py, sockets/live.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medviz_core.engine.api import StreamEngine
from medviz_core.errors import BusyError, MedvizError
from medviz_core.recording.deidentify import RecordingIdentity
from medviz_core.recording.file import in_recordings_folder
from medviz_core.session_frames import SessionFrame, session_frames
from medviz_core.types import StreamEnd, source_key
from medviz_core.wire.client_frames import StartRequest
from medviz_core.wire.codes import ErrorCode, close_code_for
from medviz_core.wire.server_frames import EndFrame, ErrorFrame, QueuedFrame
from server.fair_queue import FairQueue
from server.recording_disk import OpenRecording, SessionRecording, check_room

log = logging.getLogger("medviz.server")

Emit = Callable[[bytes, bool], None]  # (frame bytes, keep in the session log)
Hold = Callable[[int], ContextManager[None]]  # hold bytes of the image budget for a block
HISTORY = 10_000  # entries of the order of work kept
WAITED = StreamEnd("cancelled", 0, "", 0.0, 0.0, "cancelled while waiting")  # the end of a job cancelled in line


@dataclass(frozen=True, eq=False)
class Task:
    """An analysis waiting for the worker: `owner` is the connection that asked, `source` what it
    is about ("session:<id>" or "recording:<id>"), `preempt` asks it to yield (False: it will not),
    `between_steps` whether it may run between the frames of its source session (its owner asked)."""

    owner: str
    run: Callable[[], None]
    source: str = ""
    preempt: Callable[[], bool] = lambda: False
    between_steps: Callable[[], bool] = lambda: False


class FairLine:
    """Tasks waiting in a FairQueue under a condition: the line AnalysisJobs queues on (analysis_jobs.TaskLine),
    shared by GenerationWorker and a scaled-out web node's RemoteAnalyses. Needs `_lock` and `_tasks`."""

    _lock: threading.Condition
    _tasks: FairQueue[Task]

    def check_room(self, owner: str) -> None:
        """BusyError if `owner` may not queue another task now (its own bound or the total)."""
        with self._lock:
            self._tasks.check_room(owner)

    def run_task(self, owner: str, run: Callable[[], None], source: str = "",
                 preempt: Callable[[], bool] = lambda: False,
                 between_steps: Callable[[], bool] = lambda: False) -> Task:
        """Queue `run` (on the worker thread: never inside a step). BusyError past the bounds."""
        task = Task(owner, run, source, preempt, between_steps)
        with self._lock:
            self._tasks.push(owner, task)
            self._lock.notify()
        return task

    def requeue_task(self, task: Task) -> None:
        """A task that yielded to a session goes back to the head of its owner's line."""
        with self._lock:
            self._tasks.push_front(task.owner, task)
            self._lock.notify()

    def drop_task(self, task: Task) -> None:
        """Take a task that has not started out of the line (it never runs)."""
        with self._lock:
            self._tasks.discard(task.owner, task)


def _no_budget(nbytes: int) -> ContextManager[None]:
    return contextlib.nullcontext()


JobState = Literal["queued", "running", "finished"]
"""Where a generation job stands: in the queue, on the model's thread, or done (its last frame sent)."""


@dataclass
class Job:
    session: str
    request: StartRequest  # its parameters; the files travel as `images`
    images: Sequence[Any]  # file bytes, checked and decoded once before queueing; dropped when finished
    emit: Emit
    done: Callable[[], None]  # called once, after the last frame
    keep: Callable[[bytes], None] = lambda data: None  # a recording-only frame (the source headers), for exports
    recording: Path | None = None
    identity: RecordingIdentity = field(default_factory=RecordingIdentity)  # what its recording keeps of the patient
    image_work: int = 0  # bytes of the image budget the run holds while the engine decodes
    cancel: threading.Event = field(default_factory=threading.Event)
    state: JobState = "queued"  # queued -> running -> finished
    failure: tuple[str, str] | None = None  # (error code, message) when it ended with an error frame

    @property
    def close(self) -> tuple[int, str] | None:
        """How its viewers' sockets close: with the code of its error frame, or None (1000, the default)."""
        return (close_code_for(self.failure[0]), self.failure[1]) if self.failure else None


class GenerationWorker(FairLine):
    """Runs jobs one at a time on its own thread, first come first served, and tasks between their frames."""

    def __init__(self, engine: StreamEngine, queue_cap: int, tasks: FairQueue[Task] | None = None,
                 hold: Hold = _no_budget, min_free_mb: int = 0) -> None:
        self.engine = engine
        self.queue_cap = queue_cap
        self.hold = hold
        self.min_free_mb = min_free_mb  # a recorded session needs this much free space to start
        self.open_recording: OpenRecording = in_recordings_folder  # how a session's recording file is opened
        self.history: deque[tuple[str, str]] = deque(maxlen=HISTORY)  # ("frame", session) | ("task", owner)
        self._waiting: deque[Job] = deque()
        self._tasks: FairQueue[Task] = tasks if tasks is not None else FairQueue(per_owner=1 << 30, total=1 << 30)
        self._running: Job | None = None
        self._task: Task | None = None  # the task running now, if any
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="medviz-generation", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> int:
        """Queue a job; returns its position (0: runs now). BusyError past the cap."""
        with self._lock:
            if len(self._waiting) >= self.queue_cap:
                raise BusyError(f"the generation queue is full ({self.queue_cap} waiting); try again shortly")
            self._waiting.append(job)
            position = len(self._waiting) if self._running is not None else 0
            running_task = self._task
            self._lock.notify()
        if running_task is not None and running_task.source != source_key("session", job.session):
            running_task.preempt()  # sessions first: it stops at its next cancel check and waits again
        if position:
            job.emit(QueuedFrame(position).to_wire(), False)
        return position

    def cancel(self, job: Job) -> None:
        """Stop a running job at its next step, or take a waiting one out of the line."""
        job.cancel.set()
        with self._lock:
            waiting = job in self._waiting
            if waiting:
                self._waiting.remove(job)
        if waiting:
            job.state = "finished"
            job.emit(EndFrame.of_end(WAITED).to_wire(), True)
            _finish(job)
            self._announce_positions()

    @property
    def queue_length(self) -> int:
        with self._lock:
            return len(self._waiting)

    @property
    def tasks_waiting(self) -> int:
        with self._lock:
            return len(self._tasks)

    @property
    def has_tasks(self) -> bool:
        """Whether an analysis runs on the model's thread now or waits for it."""
        with self._lock:
            return self._task is not None or len(self._tasks) > 0

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            if self._running is not None:
                self._running.cancel.set()
            self._lock.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not len(self._tasks) and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job: Job | None = None
                if self._waiting:
                    job = self._running = self._waiting.popleft()
            if job is None:
                self._run_one_task(None)
                continue
            self._announce_positions()
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None

    def _run_one_task(self, during: str | None) -> None:
        """The next task by turns, if any: any task when no run is going on (`during` None), else
        only one about that session that its owner asked for, and only while no other session waits.
        A failing task is logged and the worker goes on."""
        with self._lock:
            if self._stopping or (during is not None and self._waiting):
                return
            task = self._tasks.pop(None if during is None else lambda t: t.source == during and t.between_steps())
            self._task = task
        if task is None:
            return
        self.history.append(("task", task.owner))
        try:
            task.run()
        except Exception as error:
            log.error("a worker task failed: %s", type(error).__name__, exc_info=True)
        finally:
            with self._lock:
                self._task = None

    def _announce_positions(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        for position, job in enumerate(waiting, start=1):
            job.emit(QueuedFrame(position).to_wire(), False)

    def _run(self, job: Job) -> None:
        job.state = "running"
        recorder = SessionRecording(job.recording, self.open_recording) if job.recording is not None else None
        recording = job.recording.stem if job.recording is not None else None
        try:
            if job.recording is not None:
                check_room(job.recording, self.min_free_mb)
            run = session_frames(self.engine, job.request, job.session, job.cancel, recording, images=job.images,
                                 identity=job.identity if job.recording is not None else None)
            with self.hold(job.image_work):  # the engine decodes the files and builds the prompt here
                first = next(run)
            for frame in _chain(first, run):
                if recorder is not None:  # opened at the start frame; a write the disk refuses ends the session
                    recorder.write(frame.to_record)
                if frame.viewers:
                    job.emit(frame.data, True)
                else:
                    job.keep(frame.data)
                self.history.append(("frame", job.session))
                self._run_one_task(source_key("session", job.session))
        except MedvizError as error:
            job.failure = (error.code, error.message)
            job.emit(ErrorFrame(error.code, error.message).to_wire(), True)
        except Exception as error:
            log.error("session %s failed: %s", job.session, type(error).__name__, exc_info=True)
            job.failure = (ErrorCode.INTERNAL, "the server failed to run this session")
            job.emit(ErrorFrame(*job.failure).to_wire(), True)
        finally:
            if recorder is not None:
                recorder.close()  # never raises: the worker goes on to the next session
            job.state = "finished"
            _finish(job)


def _chain(first: SessionFrame, rest: Iterator[SessionFrame]) -> Iterator[SessionFrame]:
    yield first
    yield from rest


def _finish(job: Job) -> None:
    """The job is over: drop its files (viewers have the start frame's PNG) and say so once."""
    job.images = ()
    job.done()
