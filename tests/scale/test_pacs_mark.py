"""The PACS provenance mark through Redis: a start a web node itself retrieved from its PACS (StartRequest.from_pacs,
never in the request's bytes) reaches the worker in its job entry's own `pacs` field, so the session's source frame,
its recording and the web node's owner view carry the mark as a local session's do; a start without it, and a job
entry queued before the field existed, read as not from the PACS. On a real Redis and the tiny model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from medviz_core.recording.file import read_recording, recording_path
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import ParamsRequest, StartRequest
from server.scale.entries import job_entry
from server.scale.keys import GROUP, Keys, range_entries
from server.scale.queue import RedisQueue
from server.scale.sessions import RedisSessions
from tests.scale.conftest import Cluster
from tests.server.helpers import kinds, run

KEYS = Keys()
DICOM = "nih_00000002_000_dx.dcm"


def _submitted(cluster: Cluster, request: StartRequest) -> tuple[str, list[bytes], bool]:
    """A start submitted through a web node's RedisSessions and run by a worker: its id, the owner's frames and
    whether the node's owner view of it is marked from the PACS."""
    async def scenario() -> tuple[str, list[bytes], bool]:
        sessions = RedisSessions(cluster.settings, asyncio.get_running_loop())
        try:
            session_id, owner = sessions.submit(request)
            data = [frame async for frame in owner.frames()]
            return session_id, data, sessions.live_source(session_id, owner=True).from_pacs
        finally:
            await asyncio.to_thread(sessions.close)

    return run(scenario())


def _source_in_redis(cluster: Cluster, session_id: str) -> frames.SourceFrame:
    kept = cluster.redis.client().get(KEYS.source(session_id))
    assert isinstance(kept, bytes)
    source = frames.decode(kept)
    assert isinstance(source, frames.SourceFrame)
    return source


def _recorded_source(cluster: Cluster, session_id: str) -> frames.SourceFrame:
    recording = read_recording(recording_path(cluster.settings.recordings, session_id))
    assert recording.source is not None
    return recording.source


def test_a_start_the_web_node_retrieved_from_its_pacs_is_marked_on_the_worker_and_one_uploaded_is_not(
        cluster: Cluster, tiny_engine: Any, cxr_dir: Path) -> None:
    cluster.worker(tiny_engine)
    dicom = (cxr_dir / DICOM).read_bytes()
    request = StartRequest(images=(dicom,), params=ParamsRequest(max_new_tokens=2), record=True)

    pacs_id, pacs_data, pacs_owned = _submitted(cluster, replace(request, from_pacs=True))
    upload_id, upload_data, upload_owned = _submitted(cluster, request)

    assert kinds(pacs_data) == kinds(upload_data) == ["start", "step", "step", "end"]
    assert (_source_in_redis(cluster, pacs_id).from_pacs, _recorded_source(cluster, pacs_id).from_pacs,
            pacs_owned) == (True, True, True)
    assert (_source_in_redis(cluster, upload_id).from_pacs, _recorded_source(cluster, upload_id).from_pacs,
            upload_owned) == (False, False, False)
    assert _recorded_source(cluster, pacs_id).deidentified  # the mark travels with a de-identified recording too


def test_the_mark_is_the_job_entrys_own_field_kept_when_requeued_and_an_entry_without_it_reads_as_uploaded(
        cluster: Cluster) -> None:
    client = cluster.redis.client()
    queue = RedisQueue(client, KEYS, replace(cluster.settings, reclaim_s=0.05))
    queue.ensure_group()
    queue.submit("marked", b"request", 0, False, 0.0, from_pacs=True)
    queue.submit("unmarked", b"request", 0, False, 0.0)
    entries = range_entries(client.xrange(KEYS.jobs))
    assert [(fields[b"session"], fields[b"pacs"]) for _, fields in entries] == [(b"marked", b"1"), (b"unmarked", b"0")]
    assert [job_entry(fields, 0).from_pacs for _, fields in entries] == [True, False]

    client.xreadgroup(GROUP, "stopped-worker", {KEYS.jobs: ">"}, count=2)  # taken by a worker that never started them
    time.sleep(0.1)
    assert queue.reclaim("another-worker") == 2  # both still in the line: queued again, each with its own mark
    requeued = range_entries(client.xrange(KEYS.jobs))
    assert [(fields[b"session"], job_entry(fields, 0).from_pacs) for _, fields in requeued] == [
        (b"marked", True), (b"unmarked", False)]
    assert [entry for entry, _ in requeued] != [entry for entry, _ in entries]

    older = {b"session": b"older", b"request": b"request", b"work": b"0"}  # queued before the field existed
    assert job_entry(older, 0).from_pacs is False
