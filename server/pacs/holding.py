"""Blocking PACS work on the app's own PACS threads, and a slot held until that work's thread itself ends.

Owns `pacs_threads` (an app's executor of PACS_THREADS threads, app.state.pacs_threads: a slow PACS holds those
only, never the event loop's shared default pool that health, the recordings list and replays use),
`on_pacs_thread` and `run_holding`: a caller that already took a slot (the app's one Send to PACS, a PACS
retrieval's place in the server's semaphore) hands over its release; the work runs on a PACS thread and the release
runs in that future's done callback, so a cancelled request (a closed socket, a client gone) never frees the slot
while its thread still talks to the PACS. Does not own taking the slot (pacs_routes.py, pacs/start.py) or the work.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
PACS_THREADS = 4  # PACS exchanges at once on one server (searches, thumbnails, retrievals, a send); the rest queue


def pacs_threads() -> ThreadPoolExecutor:
    """An app's PACS threads (app.state.pacs_threads; shut down with the app)."""
    return ThreadPoolExecutor(PACS_THREADS, thread_name_prefix="medviz-pacs")


async def on_pacs_thread(threads: Executor, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on one of `threads`; the loop keeps serving meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(threads, functools.partial(work, *args))


async def run_holding(threads: Executor, release: Callable[[], None], work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on one of `threads`; `release()` once its thread has ended (not before, even if cancelled)."""
    try:
        thread = asyncio.get_running_loop().run_in_executor(threads, functools.partial(work, *args))
    except BaseException:  # no thread to wait for (an executor shut down with its app): the slot is not kept
        release()
        raise

    def ended(done: asyncio.Future[T]) -> None:
        release()
        if not done.cancelled():
            done.exception()  # retrieved here, so a cancelled caller's thread error is not logged as never retrieved

    thread.add_done_callback(ended)
    return await asyncio.shield(thread)
