"""The frames of one session: an engine run turned into wire frames, for viewers and for recordings.

Owns: `session_frames`, which streams a `StartRequest` on an engine and yields, in order,
the `start` frame, the recording-only `source` frame when an image is DICOM (its header,
never sent to viewers; what the recording gets of it is `identity`'s: de-identified unless it
keeps identity, and a DICOM with burned-in annotation refused before any frame; marked `from_pacs` when the
request says the server retrieved its images from its PACS), one `step`
frame per token and the `end` frame. The parameters the
request left unstated are the engine's suggestion (`Engine.suggested`), and the start frame
states every parameter the run used. The server's
worker and `medviz record` both use it, so a live session and a recording made from the
command line are the same bytes. Engine errors before the first token (a bad image, a bad
prompt) propagate before any frame; a failure mid-run ends with reason `error`, never a
trace. Does not own queueing (server/worker.py) or files (recording/file.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from medviz_core.engine.api import ImageInput, StreamEngine
from medviz_core.imaging.dicom import dicom_header
from medviz_core.recording.deidentify import RecordingIdentity
from medviz_core.types import StreamEnd
from medviz_core.wire.client_frames import StartRequest
from medviz_core.wire.server_frames import EndFrame, SourceFrame, StartFrame, StepFrame

log = logging.getLogger("medviz.session")


@dataclass(frozen=True)
class SessionFrame:
    data: bytes
    viewers: bool = True  # False: kept in the recording only (the source frame)
    recorded: bytes | None = None  # what the recording gets instead of `data` (the de-identified source frame)

    @property
    def to_record(self) -> bytes:
        return self.data if self.recorded is None else self.recorded


def session_frames(engine: StreamEngine, request: StartRequest, session: str, cancel: threading.Event,
                   recording: str | None = None,
                   images: Sequence[ImageInput] | None = None,
                   identity: RecordingIdentity | None = None) -> Iterator[SessionFrame]:
    """The frames of one run of `request` (its files, or `images`: file bytes or RGB arrays, in order); `identity`:
    what a recording keeps of the patient's identity (None: the recording gets the frames as they are)."""
    pictures: list[ImageInput] = list(request.images if images is None else images)
    params = request.params.resolve(engine.suggested)
    run = engine.stream(pictures, question=request.question, params=params, methods=request.methods,
                        labels=request.labels, preset=request.preset, cancel=cancel)
    headers = tuple(dicom_header(bytes(p)) if isinstance(p, (bytes, bytearray)) else None for p in pictures)
    kept: bytes | None = None  # the source frame the recording gets, when not the session's own
    try:  # before any frame: a refused image leaves no recording
        if identity is not None and any(h is not None for h in headers):
            identity.check(headers)
            kept = None if identity.keep else replace(identity.recorded(headers), from_pacs=request.from_pacs).to_wire()
    except BaseException:
        run.close()
        raise
    created, started = time.time(), time.perf_counter()
    start = StartFrame.of_run(session, engine.facts, run.prompt, run.methods, run.params, created, recording)
    yield SessionFrame(start.to_wire())
    if any(h is not None for h in headers):
        yield SessionFrame(SourceFrame(headers, from_pacs=request.from_pacs).to_wire(), viewers=False, recorded=kept)
    try:
        for step in run:
            yield SessionFrame(StepFrame.of_step(step, (time.perf_counter() - started) * 1000.0).to_wire())
    except Exception as error:  # the engine has recorded reason "error" in run.end
        log.error("session %s failed at generation: %s", session, type(error).__name__, exc_info=True)
    finally:
        if run.end is None:  # an early close (GeneratorExit) leaves the engine's own end
            run.close()
    end = run.end or StreamEnd("error", 0, "", 0.0, 0.0, "the run ended without a result")
    yield SessionFrame(EndFrame.of_end(end).to_wire())
