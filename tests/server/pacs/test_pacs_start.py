"""A session started from the server's PACS over the websocket, on a real Orthanc: the start frame names a study
and its chosen instances, the server retrieves them and runs the session as on uploaded files, labelled from their
headers; a study gone from the PACS is refused in one error frame, and no PACS at all too; a start whose images
together pass an upload's limit (max_message_bytes) is refused as one and holds nothing after; while two starts
hang on a slow PACS a third waits image_wait_s, then is busy, and once the PACS answers the places come back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import PacsPick, ParamsRequest, StartRequest
from server.pacs.client import PacsClient
from server.pacs.config import PacsConfig
from server.pacs.start import MAX_RETRIEVALS, NO_PACS, too_large
from tests.orthanc import Orthanc
from tests.pacs.conftest import PacsStudy
from tests.server.helpers import LiveServer, receive_all, recv, run, until
from tests.server.pacs.conftest import OPERATOR, PACS_KEY, BlockingPacs


def pacs_start(pick: PacsPick, record: bool = False) -> bytes:
    return StartRequest(images=(), pacs=pick, params=ParamsRequest(max_new_tokens=3), record=record).to_wire()


def owned_session(server: LiveServer, pick: PacsPick, record: bool = False) -> tuple[frames.OwnerFrame, list[bytes]]:
    """A session started from the PACS with an owner key, run to its end: the owner frame and every frame after."""
    async def scenario() -> tuple[frames.OwnerFrame, list[bytes]]:
        async with connect(f"{server.ws}/ws/session?rejoin=1", max_size=None, additional_headers=OPERATOR) as ws:
            await ws.send(pacs_start(pick, record))
            owner = frames.decode(await recv(ws))
            assert isinstance(owner, frames.OwnerFrame), owner
            return owner, await receive_all(ws)

    return run(scenario())


def test_a_session_started_from_the_pacs_runs_on_the_retrieved_image_labelled_from_its_header(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-START", "ACC-P3-4")
    owner, data = owned_session(pacs_server(), PacsPick(study=study.study_uid, instances=(study.sop_uid,)))
    decoded = [frames.decode(d) for d in data]
    start = decoded[0]
    assert isinstance(start, frames.StartFrame), decoded[-1]
    assert [image.label for image in start.images] == ["PA"]
    assert [f.type for f in decoded] == ["start", "step", "step", "step", "end"]
    assert owner.session == start.session


def test_a_start_on_a_study_gone_from_the_pacs_is_refused_in_one_line(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], orthanc: Orthanc) -> None:
    study = stored_study("P3-GONE", "ACC-P3-7")
    orthanc.delete_study(study.study_uid)
    server = pacs_server()

    async def start() -> Any:
        async with connect(f"{server.ws}/ws/session", max_size=None, additional_headers=OPERATOR) as ws:
            await ws.send(pacs_start(PacsPick(study=study.study_uid, instances=(study.sop_uid,))))
            return frames.decode((await receive_all(ws))[0])

    refused = run(start())
    assert isinstance(refused, frames.ErrorFrame), refused
    assert (refused.code, refused.message) == ("not_found", f"the PACS at {orthanc.dicomweb} holds no instances of "
                                                f"study {study.study_uid}")


def test_a_start_from_the_pacs_on_a_server_without_one_is_refused_in_one_line(
        make_server: Callable[..., LiveServer]) -> None:
    server = make_server()

    async def start() -> Any:
        async with connect(f"{server.ws}/ws/session", max_size=None) as ws:
            await ws.send(pacs_start(PacsPick(study="1.2.3", instances=("1.2.3.4",))))
            return frames.decode((await receive_all(ws))[0])

    refused = run(start())
    assert isinstance(refused, frames.ErrorFrame) and (refused.code, refused.message) == ("not_found", NO_PACS)


def test_a_start_whose_images_together_pass_an_uploads_limit_is_refused_and_holds_nothing_after(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy], pacs_config: PacsConfig) -> None:
    pa = stored_study("P3-TOO-BIG", "ACC-P3-BIG", view="PA")
    lateral = stored_study("P3-TOO-BIG", "ACC-P3-BIG", view="LL", study_uid=pa.study_uid)
    with PacsClient(pacs_config) as client:
        sizes = [len(client.retrieve(pa.study_uid, s.series_uid, s.sop_uid)) for s in (pa, lateral)]
    limit = max(sizes) + min(sizes) // 2  # either image alone fits, as an upload of it would; both do not
    server = pacs_server(max_message_bytes=limit)
    pick = PacsPick(study=pa.study_uid, instances=(pa.sop_uid, lateral.sop_uid))

    async def start() -> Any:
        async with connect(f"{server.ws}/ws/session", max_size=None, additional_headers=OPERATOR) as ws:
            await ws.send(pacs_start(pick))
            return frames.decode((await receive_all(ws))[0])

    refusals = [run(start()) for _ in range(MAX_RETRIEVALS + 1)]  # more than the places: none was kept
    assert {(r.code, r.message) for r in refusals} == {("too_large", too_large(sum(sizes), limit))}
    places: asyncio.Semaphore = server.app.state.pacs_retrievals
    assert (places.locked(), server.app.state.sessions.images.in_use) == (False, 0)
    owner, data = owned_session(server, PacsPick(study=pa.study_uid, instances=(pa.sop_uid,)))
    assert frames.decode(data[-1]).type == "end"


def test_a_third_start_while_two_hang_on_the_pacs_waits_image_wait_s_then_is_busy_and_the_places_come_back(
        make_server: Callable[..., LiveServer], blocking_pacs: BlockingPacs) -> None:
    server = make_server(pacs=PacsConfig(blocking_pacs.url), pacs_key=PACS_KEY, image_wait_s=1)

    async def start() -> Any:
        async with connect(f"{server.ws}/ws/session", max_size=None, additional_headers=OPERATOR) as ws:
            await ws.send(pacs_start(PacsPick(study="1.2.3", instances=("1.2.3.4",))))
            return frames.decode((await receive_all(ws))[0])

    async def scenario() -> tuple[list[Any], Any, float, Any]:
        hanging = [asyncio.ensure_future(start()) for _ in range(MAX_RETRIEVALS)]
        await until(lambda: blocking_pacs.arrived == MAX_RETRIEVALS, "both places retrieve from the PACS")
        began = time.monotonic()
        third = await start()
        waited = time.monotonic() - began
        blocking_pacs.release()
        return await asyncio.gather(*hanging), third, waited, await start()

    hung, third, waited, after = run(scenario())
    gone = ("not_found", f"the PACS at {blocking_pacs.url} holds no instances of study 1.2.3 (HTTP 404)")
    assert (third.code, third.message) == ("busy", f"{MAX_RETRIEVALS} starts are retrieving from the PACS and none "
                                                   "ended within 1 s (image_wait_s): try again in a moment")
    assert 1 <= waited < 10
    assert [(f.code, f.message) for f in hung] == [gone] * MAX_RETRIEVALS
    assert (after.code, after.message) == gone  # the places came back: a start after them is not busy
    assert server.app.state.pacs_retrievals.locked() is False
