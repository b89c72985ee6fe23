"""What a Redis worker analyses: a session's frames read back from Redis, or a recording in the shared folder.

Owns: `WorkerSources.get(key)`, the `AnalysisSource` of "session:<id>" (the kept frames of
`P:s:ID:frames`, read incrementally and decoded once each through sessions.SessionSource,
the source frame's DICOM headers from `P:s:ID:source`, its recording in the shared folder)
or of "recording:<id>" (read again only when the file changed; compute.replay_source), each as the
asker may see it: a key with compute.DEIDENTIFIED is a watcher's de-identified view (under a key
of this worker's per session), one without it the owner's (an identified export of a de-identified
recording's session is not recorded). The newest 64 sessions and 8
recordings are kept; a session that falls out is `forget`-ten by the worker's analyses.
NotFoundError for a source that is gone. Does not own the analyses (analysis_jobs.py).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from medviz_core.analyses.compute import DEIDENTIFIED, AnalysisSource, owner_view, replay_source, viewer_view
from medviz_core.errors import NotFoundError, RequestError
from medviz_core.recording.deidentify import Deidentifier
from medviz_core.recording.file import read_recording, recording_path
from medviz_core.types import source_key
from server.scale.entries import BadEntry, FrameItem, stream_item
from server.scale.keys import Keys, range_entries
from server.sessions import SessionSource, unknown

SESSIONS_KEPT, RECORDINGS_KEPT = 64, 8


@dataclass
class _Log:
    frames: list[bytes] = field(default_factory=list)  # the kept frames so far
    last: str = ""  # the last entry read
    source: SessionSource = field(default_factory=SessionSource)
    deidentifier: Deidentifier = field(default_factory=Deidentifier)  # its watchers' view's key


class WorkerSources:
    def __init__(self, client: redis.Redis, keys: Keys, recordings: Path, forget: Callable[[str], None],
                 keep_identity: bool = False) -> None:
        self.r, self.keys, self.recordings, self.forget = client, keys, recordings, forget
        self.keep_identity = keep_identity  # the recordings keep their patients' identity (a clinical archive)
        self._sessions: OrderedDict[str, _Log] = OrderedDict()
        self._recordings: OrderedDict[str, tuple[tuple[int, int], AnalysisSource]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> AnalysisSource:
        viewer = key.endswith(DEIDENTIFIED)
        kind, _, name = key[: len(key) - len(DEIDENTIFIED) if viewer else len(key)].partition(":")
        with self._lock:
            if kind == "session":
                source = self._session(name)
                if not viewer:
                    return owner_view(source, recording_deidentified=not self.keep_identity)
                return viewer_view(source, self._sessions[name].deidentifier, recording_deidentified=False)
            if kind == "recording":
                return self._recording(name)
        raise RequestError(f"an analysis source is session:<id> or recording:<id>; got {key[:80]!r}")

    def _session(self, session_id: str) -> AnalysisSource:
        known = self._sessions.pop(session_id, None) or _Log()
        start = f"({known.last}" if known.last else "-"
        for entry, fields in range_entries(self.r.xrange(self.keys.frames(session_id), min=start)):
            known.last = entry
            try:
                item = stream_item(fields)
            except BadEntry:  # not medviz's (the web nodes log it): skipped
                continue
            if isinstance(item, FrameItem) and item.kept:
                known.frames.append(item.data)
        if not known.frames and not self.r.exists(self.keys.session(session_id)):
            raise unknown(session_id)
        if not known.source.headers:
            header = self.r.get(self.keys.source(session_id))
            if isinstance(header, bytes):
                known.source.keep(header)
        self._sessions[session_id] = known
        while len(self._sessions) > SESSIONS_KEPT:
            self.forget(source_key("session", self._sessions.popitem(last=False)[0]))
        found = known.source.source(session_id, known.frames, None)
        if found.start.recording is None:
            return found
        return dataclasses.replace(found, recording=recording_path(self.recordings, found.start.recording))

    def _recording(self, name: str) -> AnalysisSource:
        path = recording_path(self.recordings, name)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFoundError(f"recording {name!r} does not exist") from None
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._recordings.pop(name, None)
        source = cached[1] if cached is not None and cached[0] == stamp else replay_source(
            name, path, read_recording(path))
        self._recordings[name] = (stamp, source)
        while len(self._recordings) > RECORDINGS_KEPT:
            self._recordings.popitem(last=False)
        return source
