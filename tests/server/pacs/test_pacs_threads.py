"""PACS exchanges run on the app's own threads (PACS_THREADS, app.state.pacs_threads), never on the event loop's
shared default pool: more thumbnails hanging on a slow PACS than that pool holds leave the health check and the
recordings list answering at once, and at most PACS_THREADS exchanges reach the PACS together."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import httpx

from server.pacs.config import PacsConfig
from server.pacs.holding import PACS_THREADS
from tests.server.helpers import LiveServer, run, until
from tests.server.pacs.conftest import OPERATOR, PACS_KEY, BlockingPacs

DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor on this machine
THUMBNAIL = "/api/pacs/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/thumbnail"


def test_thumbnails_hanging_on_a_slow_pacs_leave_the_health_check_and_the_recordings_list_answering(
        make_server: Callable[..., LiveServer], blocking_pacs: BlockingPacs) -> None:
    server = make_server(pacs=PacsConfig(blocking_pacs.url), pacs_key=PACS_KEY)
    hanging = DEFAULT_THREADS + 2

    async def scenario() -> tuple[list[int], float, list[int]]:
        async with httpx.AsyncClient(base_url=server.http, headers=OPERATOR, timeout=60) as client:
            thumbnails = [asyncio.ensure_future(client.get(THUMBNAIL)) for _ in range(hanging)]
            await until(lambda: blocking_pacs.arrived >= PACS_THREADS, "the PACS threads are all busy")
            began = time.monotonic()
            others = [(await client.get(path)).status_code for path in ("/api/health", "/api/recordings")]
            took = time.monotonic() - began
            blocking_pacs.release()
            return others, took, [answer.status_code for answer in await asyncio.gather(*thumbnails)]

    others, took, thumbnails = run(scenario())
    assert (others, thumbnails) == ([200, 200], [404] * hanging)
    assert took < 5, f"the health check and the recordings list took {took:.1f} s behind the PACS"
    assert (blocking_pacs.peak, blocking_pacs.arrived) == (PACS_THREADS, hanging)
