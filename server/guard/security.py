"""Who may talk to the server: token, Origin and Host checks on every HTTP and websocket route.

Owns: `Guard`, a pure ASGI middleware, and `with_start_token`: a loopback `medviz serve`
started without a token gets one of its own, new at every start, in the link it prints, so
other accounts on the machine get 401 (the CLI applies it; `create_app` serves what it is
given). With a token, every request must carry
it as `Authorization: Bearer T`, a `?token=T` query (websockets, links) or the
`medviz_token` cookie the server sets after a valid `?token=` page load (so the page's
own scripts and sockets need nothing more; `Secure` over TLS); it is compared in constant
time. The Cookie header is read leniently (`cookie_value`), so another app's malformed
cookie on the same host changes nothing; tokens hold only characters that travel unchanged
everywhere (settings.py refuses others at start-up). Websockets
must come from the same host, a loopback origin or an allowed origin (browsers always send
Origin; tools that send none are let through, the token still applies). On a loopback bind
the Host header must be a loopback name, which stops DNS rebinding. A refused websocket is
accepted, sent one `error` frame and closed with 4001 / 4003, so a client sees why.
The PACS (docs/security.md) takes a second credential, `Settings.pacs_key`, that share and watch links never carry:
`pacs_allowed` finds it in an `X-Medviz-Pacs-Key` header (tools), a `?pacs_key=K` query (the operator's link, and
websockets) or the `medviz_pacs_key` cookie the Guard sets after a valid `?pacs_key=` page load (HttpOnly,
SameSite=Strict, as the token's), compared in constant time; `with_start_token` makes one per start for a server with
a PACS and none given. The Guard does not refuse a request without it: the PACS routes and a PACS start ask. A page
GET (not /api, not /ws) carrying `?pacs_key=` is answered with a 303 to the same address without it (its cookies set),
so the key never stays in the address bar or the history. The PACS answers only the server's own pages
(`pacs_origin_problem`): SameSite cookies ignore the port, so a page on another port of the same host carries them;
the PACS routes and a PACS start want an Origin that is this server's exactly (scheme, host, port) or an allowed one.
`same_origin_only` applies the websockets' Origin rule to the HTTP routes that answer with a recording's
content (download, thumbnail, offline player, video start and file): 403 for a foreign Origin.
Does not own the limits on what a client sends (wire/, handlers).
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medviz_core.wire.codes import CloseCode, ErrorCode
from medviz_core.wire.server_frames import ErrorFrame
from server.pacs.config import port_of
from server.settings import Settings, is_loopback

COOKIE = "medviz_token"
PACS_COOKIE = "medviz_pacs_key"
PACS_HEADER = "x-medviz-pacs-key"
PACS_QUERY = "pacs_key"
NO_PACS_KEY = "this link does not open the PACS: ask the presenter for the operator link"
START_TOKEN_BYTES = 24  # a token-less start's own token: 192 random bits, 32 URL-safe characters


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def token_matches(expected: str, provided: str | None) -> bool:
    if provided is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), provided.encode("utf-8"))


def provided_token(scope: Scope) -> tuple[str | None, bool]:
    """(the token the request carries, whether it came in the query string)."""
    headers = _headers(scope)
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query:
        return query["token"][0], True
    return cookie_value(_cookies(scope), COOKIE), False


def _cookies(scope: Scope) -> str:
    return "; ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"cookie")


def provided_pacs_key(scope: Scope) -> tuple[str | None, bool]:
    """(the PACS key the request carries, whether it came in the query string): header, query, then cookie."""
    headers = _headers(scope)
    if PACS_HEADER in headers:
        return headers[PACS_HEADER].strip(), False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if PACS_QUERY in query:
        return query[PACS_QUERY][0], True
    return cookie_value(_cookies(scope), PACS_COOKIE), False


def pacs_allowed(settings: Settings, scope: Scope) -> bool:
    """Whether a request (HTTP or websocket) may use the PACS: it carries Settings.pacs_key (never without one)."""
    return settings.pacs_key is not None and token_matches(settings.pacs_key, provided_pacs_key(scope)[0])


def cookie_value(header: str, name: str) -> str | None:
    """Cookie `name`'s value in a Cookie header, read leniently: pairs split on `;`, each on its first
    `=`, one pair of surrounding quotes dropped. Other cookies are never parsed, so a malformed one a
    browser holds for another app on this host (`session={"a":1}`, `theme=dark mode`) changes nothing."""
    for pair in header.split(";"):
        key, equals, value = pair.partition("=")
        if equals and key.strip() == name:
            value = value.strip()
            return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return None


def with_start_token(settings: Settings) -> Settings:
    """`settings` with a token: the one given, else a new random one for this start only (a loopback
    server started without a token). Other accounts on the same machine reach 127.0.0.1 too, and
    file modes do not stop them at a socket: without the link the server printed (`?token=`), which
    sets the cookie the page then uses, they get 401 on every route and websocket. A server with a
    PACS and no PACS key gets one of this start's own too (only the operator's link carries it)."""
    if not settings.token:
        settings = dataclasses.replace(settings, token=secrets.token_urlsafe(START_TOKEN_BYTES))
    if settings.pacs is not None and not settings.pacs_key:
        settings = dataclasses.replace(settings, pacs_key=secrets.token_urlsafe(START_TOKEN_BYTES))
    return settings


def _host_name(netloc: str) -> str:
    return urlsplit(f"//{netloc}").hostname or ""


def origin_allowed(settings: Settings, origin: str | None, host: str | None) -> bool:
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in settings.allowed_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == (host or "").lower() or is_loopback(parts.hostname or "")


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, the port its scheme's default when none is named; None otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port_of(parts.scheme, port)


def _own_origin(scope: Scope, host: str | None) -> tuple[str, str, int] | None:
    """The request's own origin: its scheme (a websocket's as http/https; TLS as uvicorn saw it, a trusted proxy's
    X-Forwarded-Proto included) and its Host header."""
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    return None if host is None else _origin_of(f"{scheme}://{host}")


def pacs_origin_problem(settings: Settings, scope: Scope) -> str | None:
    """Why this request may not use the PACS from where it comes, None when it may. Its Origin must be the server's
    own exactly (scheme, host and port) or one of allowed_origins: any loopback page is not enough, as SameSite
    cookies ignore the port. Without Origin (a tool, a link) it goes on unless a browser's Sec-Fetch-Site says
    it comes from another site (an image or a no-cors GET of another page)."""
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is None:
        site = headers.get("sec-fetch-site", "").strip().lower()
        return f"a {site} request may not use the PACS here" if site in ("same-site", "cross-site") else None
    if origin.rstrip("/") in settings.allowed_origins:
        return None
    own = _own_origin(scope, headers.get("host"))
    return None if own is not None and _origin_of(origin) == own else f"origin {origin!r} may not use the PACS here"


Route = Callable[[Request], Awaitable[Response]]


def same_origin_only(route: Route) -> Route:
    """`route` refusing (403) a request whose Origin header is present and not allowed, by the websockets' rule
    (`origin_allowed`): the HTTP routes that answer with a recording's content (its download, thumbnail, offline
    player, video) are not read by another site's page. A request without Origin (a tool, a link) goes on."""
    @functools.wraps(route)
    async def checked(request: Request) -> Response:
        return foreign_origin(request, "read recordings") or await route(request)

    return checked


def foreign_origin(request: Request, what: str) -> Response | None:
    """A 403 for a request whose Origin header is present and not allowed (`what` it may not do here), else None."""
    settings: Settings = request.app.state.settings
    origin = request.headers.get("origin")
    if origin_allowed(settings, origin, request.headers.get("host")):
        return None
    message = f"origin {origin!r} may not {what} here"
    return JSONResponse({"error": {"code": ErrorCode.UNAUTHORIZED.value, "message": message}}, status_code=403)


class Guard:
    """ASGI middleware applying the checks above before any route runs."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        problem = self._problem(scope, headers)
        if problem is not None:
            status, code, message = problem
            if scope["type"] == "websocket":
                await _refuse_websocket(receive, send, code, message)
            else:
                await _refuse_http(send, status, message)
            return
        secure = scope.get("scheme") == "https"
        token, from_query = provided_token(scope)
        if self.settings.token and from_query and scope["type"] == "http":
            send = _with_cookie(send, COOKIE, self.settings.token, secure)
        key, key_from_query = provided_pacs_key(scope)
        if key_from_query and scope["type"] == "http" and pacs_allowed(self.settings, scope):
            send = _with_cookie(send, PACS_COOKIE, key or "", secure)
        if scope["type"] == "http" and _is_page(scope) and PACS_QUERY in _query(scope):
            await _see_other(send, _without_pacs_key(scope))  # the operator's link: off the address bar at once
            return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope, headers: dict[str, str]) -> tuple[int, int, str] | None:
        host = headers.get("host")
        if is_loopback(self.settings.host) and host is not None and not is_loopback(_host_name(host)):
            return 403, CloseCode.FORBIDDEN, f"host {_host_name(host)!r} is not served here; use 127.0.0.1 or localhost"
        if self.settings.token and not token_matches(self.settings.token, provided_token(scope)[0]):
            return 401, CloseCode.UNAUTHORIZED, "a valid access token is required (Authorization: Bearer or ?token=)"
        if scope["type"] == "websocket" and not origin_allowed(self.settings, headers.get("origin"), host):
            return 403, CloseCode.FORBIDDEN, f"origin {headers.get('origin')!r} may not open websockets here"
        return None


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _is_page(scope: Scope) -> bool:
    """A page load (GET or HEAD of anything but /api and /ws): what a link opens in the address bar."""
    path = str(scope.get("path", ""))
    return scope.get("method") in ("GET", "HEAD") and not path.startswith(("/api/", "/ws/")) and path not in (
        "/api", "/ws")


def _without_pacs_key(scope: Scope) -> str:
    """The request's own address (path and query, no host) without `pacs_key`; one leading slash, so it can never
    read as another host (`//host/...`)."""
    raw = bytes(scope.get("raw_path") or scope.get("path", "/").encode("utf-8")).decode("latin-1")
    path = "/" + raw.lstrip("/\\")
    kept = [(name, value) for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                      keep_blank_values=True) if name != PACS_QUERY]
    return f"{path}?{urlencode(kept)}" if kept else path


async def _see_other(send: Send, location: str) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cookie(send: Send, name: str, value: str, secure: bool) -> Send:
    """`send` adding cookie `name` (the token's or the PACS key's) to the response; `Secure` when the request came
    over TLS (uvicorn sets the scheme from X-Forwarded-Proto when the proxy is one it trusts: --forwarded-allow-ips)."""
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{name}={value}; HttpOnly; SameSite=Strict; Path=/{'; Secure' if secure else ''}"
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode("latin-1"))]}
        await send(message)

    return wrapped


async def _refuse_http(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"code": "unauthorized", "message": message}}).encode("utf-8")
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(receive: Receive, send: Send, code: int, message: str) -> None:
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "bytes": ErrorFrame(ErrorCode.UNAUTHORIZED, message).to_wire()})
    await send({"type": "websocket.close", "code": code, "reason": message[:120]})
