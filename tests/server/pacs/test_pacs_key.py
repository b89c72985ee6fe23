"""A watch link never opens the PACS: a request with the server's token but not its PACS key gets 403 with one line
from every PACS route but "is one configured" (which says allowed: false), and a start from the PACS is refused;
the operator's link (`?token=T&pacs_key=K`) opens all of them and leaves an HttpOnly SameSite=Strict cookie that
opens them on later requests, as the token's does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import PacsPick
from server.guard.security import NO_PACS_KEY, PACS_COOKIE
from tests.pacs.conftest import PacsStudy
from tests.server.helpers import LiveServer, receive_all, run
from tests.server.pacs.conftest import PACS_KEY
from tests.server.pacs.test_pacs_start import pacs_start

TOKEN = "token-of-a-watch-link-42"
SEND = {"session": "s", "key": "k", "index": 0, "method": "consensus"}


def _routes(study: PacsStudy) -> list[str]:
    return ["/api/pacs/studies?patient_name=*", f"/api/pacs/studies/{study.study_uid}/series",
            f"/api/pacs/studies/{study.study_uid}/series/{study.series_uid}/instances/{study.sop_uid}/thumbnail",
            "/api/pacs/sendable?recording=x"]


def _start(server: LiveServer, study: PacsStudy, query: str) -> Any:
    async def scenario() -> Any:
        async with connect(f"{server.ws}/ws/session?{query}", max_size=None) as ws:
            await ws.send(pacs_start(PacsPick(study=study.study_uid, instances=(study.sop_uid,))))
            return [frames.decode(data) for data in await receive_all(ws)]

    return run(scenario())


def test_a_watch_link_gets_403_from_every_pacs_route_and_its_start_from_the_pacs_is_refused(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-KEY-WATCH", "ACC-P3-KEY-1")
    server = pacs_server(token=TOKEN)
    watch = {"token": TOKEN}
    assert httpx.get(f"{server.http}/api/pacs", params=watch).json() == {"configured": True, "allowed": False}
    answers = [httpx.get(f"{server.http}{path}", params=watch, timeout=60) for path in _routes(study)]
    answers.append(httpx.post(f"{server.http}/api/pacs/send", params=watch, json=SEND, timeout=60))
    assert [(a.status_code, a.json()["error"]["message"]) for a in answers] == [(403, NO_PACS_KEY)] * 5
    assert "P3-KEY-WATCH" not in "".join(a.text for a in answers)
    wrong = httpx.get(f"{server.http}/api/pacs/studies?patient_id=P3-KEY-WATCH",
                      params={**watch, "pacs_key": "not-the-pacs-key-0000"})
    assert (wrong.status_code, PACS_COOKIE in wrong.headers.get("set-cookie", "")) == (403, False)
    refused = _start(server, study, f"token={TOKEN}")
    assert [(f.type, getattr(f, "message", "")) for f in refused] == [("error", NO_PACS_KEY)]


def test_the_operators_link_opens_every_pacs_route_and_leaves_a_strict_cookie_that_does_too(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-KEY-OPERATOR", "ACC-P3-KEY-2")
    server = pacs_server(token=TOKEN)
    with httpx.Client(base_url=server.http, timeout=60) as browser:
        page = browser.get("/", params={"token": TOKEN, "pacs_key": PACS_KEY})
        cookies = page.headers.get_list("set-cookie")
        assert f"{PACS_COOKIE}={PACS_KEY}; HttpOnly; SameSite=Strict; Path=/" in cookies
        assert browser.get("/api/pacs").json()["allowed"] is True  # the cookies alone from here on
        assert [browser.get(path).status_code for path in _routes(study)] == [200, 200, 200, 404]  # no recording x
        found = browser.get("/api/pacs/studies?patient_id=P3-KEY-OPERATOR").json()["studies"]
        assert [s["study_uid"] for s in found] == [study.study_uid]
    started = _start(server, study, f"token={TOKEN}&pacs_key={PACS_KEY}")
    assert [f.type for f in started][:1] == ["start"] and started[-1].type == "end"
