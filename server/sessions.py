"""Live sessions behind a small interface: submit, rejoin, watch, leave, cancel, list.

Owns: `SessionManager` (the Protocol the routes use) and `LocalSessions`, its in-process
implementation: one `GenerationWorker` for the model and one broadcast `Channel` per session.
Its other implementation is scale.sessions.RedisSessions (a stateless web node: queue, logs,
cancels and analyses through Redis, generation on Redis workers or Ray Serve replicas);
`SessionSource` (a session's frames decoded once each, for analyses) serves both. Owner semantics: when the
starting client has left and nobody watches, the run stops; a viewer that was dropped (4008) or
lost its connection, the owner included, leaves with `owner_grace_s` to rejoin through
/ws/watch before that check. An owner given an owner key (`submit(..., owner_key=)`: the
owner's socket got it in the `owner` frame) may take the session back with it (`rejoin`)
while it is still an owner elsewhere or within `owner_grace_s` of its last owner leaving
(a reload); a deliberate leave revokes it. Only the key's hash is kept. Analysis jobs
(`analyses`) run on the same worker, in a line bounded per connection and in total;
`live_source` gives them a session's frames so far, decoded once each: to its owner with the
identified DICOM headers, to anyone else de-identified under its recording's key (`job.identity`:
what its recording keeps of the patient, from Settings). `images` is the image
budget start requests are admitted under; `writing` says whether a recording is still being
written (it may not be deleted).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from medviz_core.analyses.compute import AnalysisSource, has_dicom, owner_view, viewer_view
from medviz_core.engine.api import StreamEngine
from medviz_core.errors import NotFoundError, RequestError
from medviz_core.recording.file import recording_path
from medviz_core.types import source_key
from medviz_core.wire.client_frames import StartRequest
from medviz_core.wire.server_frames import SourceFrame, StartFrame, StepFrame, decode
from server.analysis_jobs import AnalysisJobs
from server.broadcast import Channel, Viewer
from server.fair_queue import FairQueue
from server.guard.image_budget import ImageBudget
from server.settings import Settings
from server.worker import GenerationWorker, Job, JobState, Task

log = logging.getLogger("medviz.server")


@dataclass(frozen=True)
class SessionInfo:
    """One row of the live sessions list (no question text, no image)."""

    id: str
    created: float
    state: JobState
    frames: int
    watchers: int
    recording: bool


def key_hash(owner_key: str) -> str:
    """What a manager keeps of an owner key: its SHA-256, hex (the key itself is never stored)."""
    return hashlib.sha256(owner_key.encode("utf-8")).hexdigest()


def owner_key_matches(kept: str | None, owner_key: str) -> bool:
    """Whether `owner_key` is the one whose `key_hash` a manager kept (`kept`; None: no owner key), in constant time."""
    return kept is not None and hmac.compare_digest(kept, key_hash(owner_key))


def new_owner_key() -> str:
    """An unguessable owner key (256 random bits), for the owner's socket only."""
    return secrets.token_urlsafe(32)


NO_REJOIN = "cannot rejoin session {id} as its owner: {why}; start a new session"


def gone_for(grace_s: float) -> str:
    return f"its owner left and did not come back within {grace_s:g} s"


def refuse_rejoin(session_id: str, why: str) -> NotFoundError:
    return NotFoundError(NO_REJOIN.format(id=repr(session_id[:64]), why=why))


class SessionManager(Protocol):
    """What the routes need from sessions; an implementation may live on other machines."""

    model: str
    device: str
    analyses: AnalysisJobs
    images: ImageBudget

    def live_source(self, session_id: str, owner: bool = False) -> AnalysisSource:
        """A session's frames so far, for analysis. NotFoundError if unknown, RequestError before start. Only its
        `owner` gets the identified DICOM headers; anyone else their de-identified view (compute.viewer_view)."""

    def submit(self, request: StartRequest, image_work: int = 0, owner_key: str | None = None) -> tuple[str, Viewer]:
        """Queue a run over the request's checked files (`image_work`: bytes of the image budget its
        decoding needs); returns its id and the owner's viewer. BusyError when the line is full.
        `owner_key`: the key that lets the owner `rejoin` (None: it cannot)."""

    def rejoin(self, session_id: str, owner_key: str) -> Viewer:
        """The owner back (a reloaded page): a viewer with the session's log so far, then live frames.
        NotFoundError (one clear line) for an unknown session, a wrong key, or a grace period past."""

    def watch(self, session_id: str) -> Viewer:
        """A viewer that gets the session's frames so far, then live ones. NotFoundError if unknown."""

    def is_owner(self, session_id: str, owner_key: str) -> bool:
        """Whether `owner_key` is the owner key of this session (compared in constant time); False if unknown."""

    def leave(self, session_id: str, viewer: Viewer, owner: bool = False, grace: bool = False) -> None:
        """A viewer went away; stops the run when its owner has left and nobody watches (`grace`:
        after owner_grace_s, so a dropped owner can rejoin)."""

    def writing(self, recording_id: str) -> bool:
        """Whether a live session is still writing this recording."""

    def cancel(self, session_id: str) -> None: ...

    def sessions(self) -> list[SessionInfo]: ...

    @property
    def queue_length(self) -> int: ...

    def close(self) -> None: ...


def unknown(session_id: str) -> NotFoundError:
    return NotFoundError(f"session {session_id[:64]!r} does not exist or has expired")


@dataclass
class SessionSource:
    """A session's frames decoded once each as its log grows, for analyses (every SessionManager's)."""

    start: StartFrame | None = None
    steps: list[StepFrame] = field(default_factory=list)
    decoded: int = 0  # frames of the log decoded so far
    headers: tuple[bytes | None, ...] = ()  # the source DICOM headers: for exports, never sent to viewers
    from_pacs: bool = False  # the source frame's mark: the server retrieved the images from its PACS

    def source(self, session_id: str, log: Sequence[bytes], recording: Path | None) -> AnalysisSource:
        """The source of `log` (the session's kept frames so far); RequestError before its start frame."""
        for data in log[self.decoded :]:
            frame = decode(data)
            if isinstance(frame, StartFrame):
                self.start = frame
            elif isinstance(frame, StepFrame):
                self.steps.append(frame)
        self.decoded = len(log)
        if self.start is None:
            raise RequestError("the session has not started yet; analysis needs its first token")
        return AnalysisSource(key=source_key("session", session_id), start=self.start, steps=tuple(self.steps),
                              recording=recording, headers=self.headers, from_pacs=self.from_pacs)

    def keep(self, data: bytes) -> None:
        """A recording-only frame: the source frame's headers are kept for exports, its PACS mark for a send."""
        frame = decode(data)
        if isinstance(frame, SourceFrame):
            self.headers, self.from_pacs = frame.headers, frame.from_pacs


@dataclass
class _Session:
    job: Job
    channel: Channel
    created: float
    owners: int = 1  # the owner's sockets open now (a rejoin may come before the old socket's close)
    owner_key: str | None = None  # key_hash of the owner key; None: no rejoin
    rejoin_until: float = 0.0  # loop time until which the owner may rejoin after its last socket left
    abandoned: bool = False  # stopped because its owner left and nobody watched: the key is void for good
    frames: SessionSource = field(default_factory=SessionSource)


class LocalSessions:
    """Sessions on this process: one worker thread for the model, channels on the event loop."""

    def __init__(self, engine: StreamEngine, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.model = str(engine.facts.name)
        self.device = str(engine.facts.device)
        self.images = ImageBudget(settings.image_budget_bytes, loop)
        tasks: FairQueue[Task] = FairQueue(per_owner=settings.analysis_per_connection, total=settings.analysis_queue)
        self.worker = GenerationWorker(engine, settings.queue_cap, tasks, hold=self.images.hold,
                                       min_free_mb=settings.recordings_min_free_mb)
        self.analyses = AnalysisJobs(engine, self.worker, settings.analysis_cache,
                                     results_max_bytes=settings.recording_results_max_bytes)
        self._sessions: dict[str, _Session] = {}

    def submit(self, request: StartRequest, image_work: int = 0, owner_key: str | None = None) -> tuple[str, Viewer]:
        session_id = secrets.token_urlsafe(16)
        channel = Channel(self.settings.viewer_queue)
        owner = channel.subscribe()
        target = recording_path(self.settings.recordings, session_id) if request.record else None

        def emit(frame: bytes, keep: bool) -> None:
            self.loop.call_soon_threadsafe(channel.publish, frame, keep)

        def done() -> None:
            self.loop.call_soon_threadsafe(self._finished, session_id)

        def keep(data: bytes) -> None:
            self.loop.call_soon_threadsafe(self._keep_source, session_id, data)

        files = request.images  # the job keeps them as its images; its request keeps the parameters only
        job = Job(session=session_id, request=replace(request, images=tuple(b"" for _ in files)),
                  images=files, emit=emit, done=done, keep=keep, recording=target, image_work=image_work,
                  identity=self.settings.recording_identity())
        self._sessions[session_id] = _Session(job=job, channel=channel, created=time.time(),
                                              owner_key=None if owner_key is None else key_hash(owner_key))
        try:
            position = self.worker.submit(job)
        except BaseException:
            del self._sessions[session_id]
            raise
        log.info("session %s queued at %d: %d image(s), %d bytes, question %s, max tokens %s, record %s",
                 session_id, position, len(files), sum(len(i) for i in files), "yes" if request.question else "no",
                 request.params.max_new_tokens or "the model's", request.record)
        return session_id, owner

    def watch(self, session_id: str) -> Viewer:
        session = self._sessions.get(session_id)
        if session is None:
            raise unknown(session_id)
        return session.channel.subscribe()

    def rejoin(self, session_id: str, owner_key: str) -> Viewer:
        session = self._sessions.get(session_id)
        if session is None:
            raise refuse_rejoin(session_id, "it does not exist or has expired")
        if not owner_key_matches(session.owner_key, owner_key):
            raise refuse_rejoin(session_id, "the owner key does not match")
        # A session that ended on its own may be taken back while it lingers: its owner's old socket may have
        # seen the end while the page had lost its link (the end went into the void), and a rejoin then only
        # gives the log, as through Redis, where a leave after the end changes nothing.
        over = session.job.state == "finished" and not session.abandoned
        if session.abandoned or (not over and session.owners == 0 and self.loop.time() > session.rejoin_until):
            raise refuse_rejoin(session_id, gone_for(self.settings.owner_grace_s))
        session.owners += 1
        log.info("session %s: owner rejoined", session_id)
        return session.channel.subscribe()

    def is_owner(self, session_id: str, owner_key: str) -> bool:
        session = self._sessions.get(session_id)
        return session is not None and owner_key_matches(session.owner_key, owner_key)

    def live_source(self, session_id: str, owner: bool = False) -> AnalysisSource:
        session = self._sessions.get(session_id)
        if session is None:
            raise unknown(session_id)
        source = session.frames.source(session_id, session.channel.log, session.job.recording)
        identity = session.job.identity
        if owner or not has_dicom(source):  # no identity to hide: watchers join the owner's jobs
            return owner_view(source, recording_deidentified=not identity.keep)
        return viewer_view(source, identity.deidentifier, recording_deidentified=not identity.keep)

    def _keep_source(self, session_id: str, data: bytes) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.frames.keep(data)

    def leave(self, session_id: str, viewer: Viewer, owner: bool = False, grace: bool = False) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        session.channel.unsubscribe(viewer)
        if owner:
            session.owners = max(0, session.owners - 1)
            if session.owners == 0:  # a deliberate leave revokes the key at once
                session.rejoin_until = self.loop.time() + (self.settings.owner_grace_s if grace else 0.0)
        if grace:
            self.loop.call_later(self.settings.owner_grace_s, self._stop_if_abandoned, session_id)
        else:
            self._stop_if_abandoned(session_id)

    def _stop_if_abandoned(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.owners > 0:
            return
        wait = session.rejoin_until - self.loop.time()
        if wait > 0:  # its owner may still come back (a later leave set a later time, or the timer ran early)
            self.loop.call_later(wait, self._stop_if_abandoned, session_id)
            return
        if session.channel.watchers == 0 and session.job.state != "finished":
            log.info("session %s: owner gone and nobody watching; stopping", session_id)
            session.abandoned = True
            self.worker.cancel(session.job)

    def writing(self, recording_id: str) -> bool:
        return any(s.job.recording is not None and s.job.recording.stem == recording_id and s.job.state != "finished"
                   for s in self._sessions.values())

    def cancel(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            raise unknown(session_id)
        self.worker.cancel(session.job)

    def sessions(self) -> list[SessionInfo]:
        return [
            SessionInfo(id=sid, created=s.created, state=s.job.state, frames=len(s.channel.log),
                        watchers=s.channel.watchers, recording=s.job.recording is not None)
            for sid, s in sorted(self._sessions.items(), key=lambda item: -item[1].created)
        ]

    @property
    def queue_length(self) -> int:
        return self.worker.queue_length

    def close(self) -> None:
        self.worker.stop()
        self.images.close()

    def _finished(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        session.channel.end(session.job.close)
        log.info("session %s finished: %d frames", session_id, len(session.channel.log))
        self.loop.call_later(self.settings.linger_s, self._expire, session_id)

    def _expire(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self.analyses.forget(source_key("session", session_id))
