"""A session started from the PACS: the start request's chosen instances retrieved server-side.

Owns `from_pacs`: a start request with a `pacs` pick (client_frames.PacsPick) becomes an upload-like request holding
the retrieved Part 10 files and their view labels (views.open_study on a worker thread), which then meets the same
image checks, admission and image budget as uploaded files (sockets/live.read_start) and is recorded like a DICOM
upload. Does not own talking DICOMweb (client.py), choosing the views (views.py) or the checks that follow.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from medviz_core.errors import NotFoundError, RequestError
from medviz_core.limits import MAX_LABEL_CHARS
from medviz_core.prompts import check_label
from medviz_core.wire.client_frames import PacsPick, StartRequest
from server.pacs.client import PacsClient
from server.pacs.config import PacsConfig
from server.pacs.views import open_study

NO_PACS = "this server has no PACS configured (medviz serve --pacs URL): start from files instead"


async def from_pacs(config: PacsConfig | None, request: StartRequest) -> StartRequest:
    """`request` itself without a pacs pick; else the same request with the pick's instances as its files and labels.
    NotFoundError without a PACS; each PacsError of the retrieval as it is (one clear line)."""
    pick = request.pacs
    if pick is None:
        return request
    if config is None:
        raise NotFoundError(NO_PACS)
    files, labels = await asyncio.to_thread(_retrieve, config, pick)
    return replace(request, images=tuple(files), labels=tuple(_label(label, n) for n, label in enumerate(labels)),
                   pacs=None)


def _retrieve(config: PacsConfig, pick: PacsPick) -> tuple[list[bytes], tuple[str, ...]]:
    with PacsClient(config) as client:
        return open_study(client, pick.study, pick.series, chosen=pick.instances)


def _label(label: str, number: int) -> str:
    """A view label as a start frame's label: at most MAX_LABEL_CHARS, else (a PACS's odd text) `image N`."""
    try:
        return check_label(label.strip()[:MAX_LABEL_CHARS])
    except RequestError:
        return f"image {number + 1}"
