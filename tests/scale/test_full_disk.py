"""A full recordings disk in a scaled-out medviz, on a real Redis: the worker ends that session with an error
naming the disk, releases its job and takes the next one (recorded or not). Nothing is mounted: the worker's
recordings go to /dev/full (tests/disk.py)."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from tests.disk import FullDisk
from tests.scale.conftest import Cluster
from tests.server.helpers import kinds, receive_all, run, session, start_bytes


def test_a_worker_on_a_full_disk_ends_that_session_with_the_disk_named_and_serves_the_next(
        cluster: Cluster, tiny_engine: Any, sample_bytes: bytes) -> None:
    node = cluster.node()
    worker = cluster.worker(tiny_engine)
    disk = FullDisk(room=0)
    worker.generation.open_recording = disk

    async def recorded() -> tuple[list[bytes], int | None]:
        async with connect(f"{node.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=4, record=True))
            data = await receive_all(ws)
        return data, ws.close_code

    data, code = run(recorded())
    error = frames.decode(data[-1])
    assert error == frames.ErrorFrame("internal", f"the recordings disk is full: recording {disk.opened[0].stem} "
                                      "could not be written, so the session was stopped; start it again without "
                                      "recording, or once the disk is fixed")
    assert code == 4500
    assert kinds(run(session(node, sample_bytes, max_new_tokens=2)))[-1] == "end"  # the next job is taken
    worker.generation.open_recording = FullDisk(room=1 << 30)
    data, code = run(recorded())
    assert (kinds(data)[-1], code) == ("end", 1000)
    assert worker.served == 3
