"""A session started from the PACS: the start request's chosen instances retrieved server-side.

Owns `from_pacs`: a start request with a `pacs` pick (client_frames.PacsPick) becomes an upload-like request holding
the retrieved Part 10 files and their view labels (views.open_study on a worker thread), which then meets the same
image checks, admission and image budget as uploaded files (sockets/live.read_start) and is recorded like a DICOM
upload. A start is held to an upload's limits: the SUM of its retrieved bytes to max_message_bytes (an upload's whole
start frame; retrieval stops at the instance that passes it, MessageTooLarge), and at most MAX_RETRIEVALS starts
retrieve at once on the server (`retrievals()`, app.state.pacs_retrievals; a start waits at most image_wait_s for a
place, then busy; the place is held until the retrieval's thread, one of the app's PACS threads, ends). Does not
own talking DICOMweb (client.py), choosing the views (views.py), the PACS key and origin a start needs
(sockets/live.py asks guard/security.py) or the checks that follow.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import replace

from medviz_core.errors import BusyError, MessageTooLarge, NotFoundError, RequestError
from medviz_core.limits import MAX_LABEL_CHARS
from medviz_core.prompts import check_label
from medviz_core.wire.client_frames import PacsPick, StartRequest
from server.pacs.client import PacsClient
from server.pacs.config import PacsConfig
from server.pacs.holding import run_holding
from server.pacs.views import open_study

NO_PACS = "this server has no PACS configured (medviz serve --pacs URL): start from files instead"
MAX_RETRIEVALS = 2  # PACS starts retrieving at once on one server; the others wait (image_wait_s), then busy


def retrievals() -> asyncio.Semaphore:
    """An app's places for PACS retrievals (app.state.pacs_retrievals)."""
    return asyncio.Semaphore(MAX_RETRIEVALS)


def too_large(total: int, limit: int) -> str:
    """The one line of a start whose retrieved images pass `limit` bytes together (as an oversized upload's)."""
    return (f"the chosen images are {total} bytes (retrieval stopped there); the limit is {limit} "
            "(max_message_bytes, as for an upload): choose fewer views")


async def from_pacs(config: PacsConfig | None, request: StartRequest, places: asyncio.Semaphore, threads: Executor,
                    max_bytes: int, wait_s: float) -> StartRequest:
    """`request` itself without a pacs pick; else the same request with the pick's instances as its files and labels,
    retrieved on one of `threads` in one of `places` (waiting at most `wait_s`: BusyError) and at most `max_bytes`
    together (MessageTooLarge). NotFoundError without a PACS; each PacsError of the retrieval as it is (one clear
    line)."""
    pick = request.pacs
    if pick is None:
        return request
    if config is None:
        raise NotFoundError(NO_PACS)
    try:
        await asyncio.wait_for(places.acquire(), wait_s)
    except asyncio.TimeoutError:
        raise BusyError(f"{MAX_RETRIEVALS} starts are retrieving from the PACS and none ended within {wait_s:g} s "
                        "(image_wait_s): try again in a moment") from None
    files, labels = await run_holding(threads, places.release, _retrieve, config, pick, max_bytes)
    return replace(request, images=tuple(files), labels=tuple(_label(label, n) for n, label in enumerate(labels)),
                   pacs=None, from_pacs=True)


class CappedClient(PacsClient):
    """A PacsClient whose retrievals together stop at `max_bytes`: MessageTooLarge at the instance that passes it."""

    def __init__(self, config: PacsConfig, max_bytes: int) -> None:
        super().__init__(config)
        self.max_bytes = max_bytes
        self.retrieved = 0

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        data = super().retrieve(study_uid, series_uid, sop_uid)
        self.retrieved += len(data)
        if self.retrieved > self.max_bytes:
            raise MessageTooLarge(too_large(self.retrieved, self.max_bytes))
        return data


def _retrieve(config: PacsConfig, pick: PacsPick, max_bytes: int) -> tuple[list[bytes], tuple[str, ...]]:
    client = CappedClient(config, max_bytes)
    with client:
        return open_study(client, pick.study, pick.series, chosen=pick.instances)


def _label(label: str, number: int) -> str:
    """A view label as a start frame's label: at most MAX_LABEL_CHARS, else (a PACS's odd text) `image N`."""
    try:
        return check_label(label.strip()[:MAX_LABEL_CHARS])
    except RequestError:
        return f"image {number + 1}"
