"""What every HTTP response tells the browser about how it may be used: security and caching headers.

Owns: `SecurityHeaders`, a pure ASGI middleware that adds to every HTTP response (the page, its
scripts and styles, every /api answer, the guard's refusals) a Content-Security-Policy the page
works under (its own scripts, styles, images and sockets only: no inline script, no plugin, no
other site, no framing), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` (a link's
`?token=` never leaves in a Referer) and `X-Content-Type-Options: nosniff`; and to every /api
answer (recordings, their downloads and thumbnails, the session list) `Cache-Control: no-store`,
replacing what a route set, so no browser or proxy keeps patient data. Does not own who may
ask (guard/security.py) or the token's cookie (guard/security.py sets it, `Secure` over TLS).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""'self' in connect-src covers the page's own ws:// and wss:// sockets (CSP level 3); `data:` is the
page's empty icon, `blob:` a picture the page makes itself."""

EVERY_RESPONSE: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)
PRIVATE_PREFIX = "/api/"
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = [*EVERY_RESPONSE, *((NO_STORE,) if scope.get("path", "").startswith(PRIVATE_PREFIX) else ())]
        replaced = {name for name, _ in added}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if bytes(k).lower() not in replaced]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, with_headers)
