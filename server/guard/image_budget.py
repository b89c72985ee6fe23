"""How much image decoding the server does at once: one budget of bytes, shared by every request.

Owns: `ImageBudget` (bytes of decoding work in flight, estimated from each file's header
by medviz_core.imaging.headers before any pixel is decoded; threadsafe; the event loop waits
for room with `reserve`, the generation worker with `hold`) and `check_images`, which
admits a start request's files: headers first (size, channels, bit depth against the
per-image limits; the study's total work against the whole budget), then each file is
decoded once under the budget, on the budget's own threads (its header not read again),
and its pixels dropped: a queued session keeps only its file bytes, and the worker decodes
them again, under the budget, when the session runs. That second decode is deliberate: the
pixels are several times the file (a 2 MB JPEG X-ray is 15 MB of RGB), and keeping them
for every queued session would put the queue's memory outside the budget (docs/security.md
promises that queued sessions keep only the uploaded files); admission decodes so a damaged
file is refused before the session is queued. Does not own decoding (medviz_core/imaging/load.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from medviz_core.errors import BusyError, ImageError
from medviz_core.imaging.headers import ImageHeader
from medviz_core.imaging.load import image_header, load_image


class ImageBudget:
    """A count of bytes in use against `total`; released bytes wake waiters on threads and on the loop."""

    def __init__(self, total: int, loop: asyncio.AbstractEventLoop, threads: int = 2) -> None:
        self.total = total
        self.loop = loop
        self.in_use = 0
        self.peak = 0  # the most ever held at once (tests and benchmarks read it)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="medviz-decode")
        self._lock = threading.Condition()
        self._freed = asyncio.Event()

    def _take(self, nbytes: int) -> bool:
        with self._lock:
            if self.in_use + nbytes > self.total and self.in_use > 0:
                return False
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.in_use -= nbytes
            self._lock.notify_all()
        self.loop.call_soon_threadsafe(self._freed.set)

    async def reserve(self, nbytes: int, wait_s: float) -> None:
        """Take `nbytes` on the event loop, waiting up to `wait_s` for room; BusyError after that."""
        deadline = self.loop.time() + wait_s
        while not self._take(nbytes):
            self._freed.clear()
            left = deadline - self.loop.time()
            if left <= 0:
                raise BusyError(f"the server is decoding {self.in_use} bytes of images, its budget is {self.total}; "
                                "try again shortly")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._freed.wait(), left)

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """On a thread: wait for room for `nbytes` (at most the whole budget), hold it for the block."""
        nbytes = min(nbytes, self.total)
        with self._lock:
            while not self._take(nbytes):
                self._lock.wait()
        try:
            yield
        finally:
            self.release(nbytes)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def check_images(images: Sequence[bytes], budget: ImageBudget, max_pixels: int, max_decoded_bytes: int,
                       wait_s: float) -> int:
    """Admit a study's files (ImageError, BusyError); returns the bytes of work the worker will need to run it."""
    loop = asyncio.get_running_loop()

    def header(data: bytes) -> ImageHeader:
        return image_header(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)

    def decode(data: bytes, found: ImageHeader) -> None:
        try:  # released here, on the thread, so a client that leaves mid-decode cannot free it early
            load_image(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes,
                       checked=found)  # its header is not read again; the pixels are dropped at once
        finally:
            budget.release(found.work_bytes)

    headers = [await loop.run_in_executor(budget.executor, header, data) for data in images]
    work = sum(h.work_bytes for h in headers)
    if work > budget.total:
        raise ImageError(f"decoding these {len(images)} image(s) ({', '.join(h.describe() for h in headers)}) "
                         f"needs about {work} bytes; the server decodes at most {budget.total} at once")
    for data, found in zip(images, headers):
        await budget.reserve(found.work_bytes, wait_s)
        await loop.run_in_executor(budget.executor, decode, data, found)
    return work
