"""Blocking PACS work on a worker thread while holding a slot, released only when the thread itself ends.

Owns `run_holding`: a caller that already took a slot (the app's one Send to PACS, a PACS retrieval's place in the
server's semaphore) hands over its release; the work runs in asyncio.to_thread and the release runs in the thread's
done callback, so a cancelled request (a closed socket, a client gone) never frees the slot while its thread still
talks to the PACS. Does not own taking the slot (pacs_routes.py, pacs/start.py) or the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def run_holding(release: Callable[[], None], work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on a worker thread; `release()` once the thread has ended (not before, even if cancelled)."""
    try:
        thread = asyncio.ensure_future(asyncio.to_thread(work, *args))
    except BaseException:
        release()
        raise

    def ended(done: asyncio.Future[T]) -> None:
        release()
        if not done.cancelled():
            done.exception()  # retrieved here, so a cancelled caller's thread error is not logged as never retrieved

    thread.add_done_callback(ended)
    return await asyncio.shield(thread)
