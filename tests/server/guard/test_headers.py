"""Security headers on every HTTP response (the page, its files, /api answers, refusals) and
`Cache-Control: no-store` on every /api answer: the recordings list, a download, a thumbnail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from medviz_core.recording.file import RecordingWriter
from server.guard.headers import CONTENT_SECURITY_POLICY
from tests.fixtures.frames import make_fixtures
from tests.server.helpers import LiveServer

FRAMES = make_fixtures.build()
TOKEN = "h3aders-token-99"
SECURITY = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def security_headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers.get(name, "(none)") for name in SECURITY}


@pytest.fixture
def server(make_server: Any) -> LiveServer:
    started: LiveServer = make_server(token=TOKEN)
    folder = started.settings.recordings
    folder.mkdir(parents=True, exist_ok=True)
    with RecordingWriter(folder / "demo_1.medviz") as writer:
        for name in ("start", "step", "end"):
            writer.write(FRAMES[name])
    return started


def test_the_policy_allows_only_the_pages_own_files_and_sockets_and_no_framing() -> None:
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")


@pytest.mark.parametrize(("path", "status", "cache"), [
    ("/", 200, "(none)"),
    ("/js/app.js", 200, "(none)"),
    ("/css/app.css", 200, "(none)"),
    ("/no-such-file", 404, "(none)"),
    ("/api/health", 200, "no-store"),
    ("/api/sessions", 200, "no-store"),
    ("/api/recordings", 200, "no-store"),
    ("/api/recordings/demo_1", 200, "no-store"),
    ("/api/recordings/demo_1/thumbnail", 200, "no-store"),
    ("/api/recordings/nope", 404, "no-store"),
])
def test_every_response_carries_the_security_headers_and_api_answers_are_never_stored(
    server: LiveServer, path: str, status: int, cache: str
) -> None:
    response = httpx.get(f"{server.http}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status
    assert security_headers(response) == SECURITY
    assert response.headers.get("cache-control", "(none)") == cache


def test_the_guards_refusals_carry_them_too(server: LiveServer) -> None:
    unauthorized = httpx.get(f"{server.http}/api/recordings/demo_1")
    rebound = httpx.get(f"{server.http}/", headers={"Host": "rebind.example", "Authorization": f"Bearer {TOKEN}"})
    assert (unauthorized.status_code, rebound.status_code) == (401, 403)
    assert security_headers(unauthorized) == SECURITY and security_headers(rebound) == SECURITY
    assert unauthorized.headers["cache-control"] == "no-store"


def test_a_deleted_recordings_answer_is_not_stored(server: LiveServer) -> None:
    response = httpx.delete(f"{server.http}/api/recordings/demo_1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (response.status_code, response.headers["cache-control"]) == (204, "no-store")
    assert not (Path(server.settings.recordings) / "demo_1.medviz").exists()
