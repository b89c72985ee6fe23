"""The PACS answers only the server's own pages: a page on another port of the same loopback host shares the
SameSite=Strict cookies (they ignore the port) but gets 403 from every PACS route and its start from the PACS is
refused, with or without the PACS key; a browser request without Origin that says it comes from another site
(Sec-Fetch-Site) is refused too; the server's exact origin and an allowed origin are served; Send to PACS takes a
JSON body only (415 otherwise: a no-cors form or text/plain post)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.typing import Origin

from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import PacsPick
from server.pacs.config import PacsConfig
from server.pacs_routes import JSON_ONLY
from tests.server.helpers import LiveServer, receive_all, run, start_bytes
from tests.server.pacs.conftest import OPERATOR, PACS_KEY
from tests.server.pacs.test_pacs_start import pacs_start

CLOSED_PACS = PacsConfig("http://127.0.0.1:9/dicom-web")  # never reached: every request here is refused before
NEIGHBOUR = "http://127.0.0.1:9999"  # another page on this host: same site, another origin
SEND = {"session": "s", "key": "k", "index": 0, "method": "consensus"}
ROUTES = ("/api/pacs", "/api/pacs/studies?patient_id=P", "/api/pacs/studies/1.2.3/series",
          "/api/pacs/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/thumbnail", "/api/pacs/sendable?recording=x")


def _server(make_server: Callable[..., LiveServer], **overrides: Any) -> LiveServer:
    return make_server(pacs=CLOSED_PACS, pacs_key=PACS_KEY, **overrides)


def _answers(server: LiveServer, **headers: str) -> list[tuple[int, str]]:
    sent = {**OPERATOR, **headers}
    answers = [httpx.get(f"{server.http}{path}", headers=sent) for path in ROUTES]
    answers.append(httpx.post(f"{server.http}/api/pacs/send", json=SEND, headers=sent))
    return [(a.status_code, a.json()["error"]["message"]) for a in answers]


def test_a_page_on_another_loopback_port_gets_403_from_every_pacs_route_even_with_the_pacs_key(
        make_server: Callable[..., LiveServer]) -> None:
    server = _server(make_server)
    assert _answers(server, origin=NEIGHBOUR) == [(403, f"origin {NEIGHBOUR!r} may not use the PACS here")] * 6
    assert httpx.get(f"{server.http}/api/health", headers={"origin": NEIGHBOUR}).status_code == 200  # PACS only


def test_a_request_without_origin_from_another_site_by_sec_fetch_site_gets_403(
        make_server: Callable[..., LiveServer]) -> None:
    server = _server(make_server)
    for site in ("same-site", "cross-site"):
        assert _answers(server, **{"sec-fetch-site": site}) == [
            (403, f"a {site} request may not use the PACS here")] * 6


def test_the_servers_own_origin_and_an_allowed_origin_use_the_pacs(make_server: Callable[..., LiveServer]) -> None:
    server = _server(make_server, allowed_origins=("https://viewer.example",))
    for origin in (server.http, "https://viewer.example"):
        answer = httpx.get(f"{server.http}/api/pacs", headers={**OPERATOR, "origin": origin,
                                                                "sec-fetch-site": "same-origin"})
        assert (answer.status_code, answer.json()["allowed"]) == (200, True)
    other_scheme = server.http.replace("http://", "https://")
    assert httpx.get(f"{server.http}/api/pacs", headers={**OPERATOR, "origin": other_scheme}).status_code == 403


def test_send_to_pacs_without_a_json_content_type_is_415_and_reaches_nothing(
        make_server: Callable[..., LiveServer]) -> None:
    server = _server(make_server)
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**OPERATOR, **({"content-type": kind} if kind else {})}
        answer = httpx.post(f"{server.http}/api/pacs/send", content=b'{"session": "s"}', headers=headers)
        assert (answer.status_code, answer.json()["error"]["message"]) == (415, JSON_ONLY)
    charset = httpx.post(f"{server.http}/api/pacs/send", content=b'{"recording": "x", "index": 0}',
                         headers={**OPERATOR, "content-type": "application/json; charset=utf-8"})
    assert charset.status_code == 400  # read, then refused for its fields (no method)


def test_a_start_from_the_pacs_on_a_page_of_another_loopback_port_is_refused_and_a_plain_start_there_runs(
        make_server: Callable[..., LiveServer], sample_bytes: bytes) -> None:
    server = _server(make_server)

    async def start() -> Any:
        async with connect(f"{server.ws}/ws/session", max_size=None, additional_headers=OPERATOR,
                           origin=Origin(NEIGHBOUR)) as ws:
            await ws.send(pacs_start(PacsPick(study="1.2.3", instances=("1.2.3.4",))))
            return [frames.decode(data) for data in await receive_all(ws)]

    refused = run(start())
    assert [(f.type, getattr(f, "message", "")) for f in refused] == [
        ("error", f"origin {NEIGHBOUR!r} may not use the PACS here")]
    async def plain() -> list[bytes]:
        async with connect(f"{server.ws}/ws/session", max_size=None, origin=Origin(NEIGHBOUR)) as ws:
            await ws.send(start_bytes(sample_bytes, 2))
            return await receive_all(ws)

    assert frames.decode(run(plain())[-1]).type == "end"  # a page of another port may still start from files
