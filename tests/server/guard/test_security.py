"""Token on every route (constant-time compare), websocket Origin and Host checks, safe binds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.typing import Origin

from medviz_core.errors import AuthError
from medviz_core.recording.file import RecordingWriter
from medviz_core.wire import server_frames as frames
from server.cli.commands import serve_settings
from server.cli.main import build_parser
from server.guard.security import cookie_value, origin_allowed, provided_token, token_matches, with_start_token
from server.settings import Settings
from tests.fixtures.frames import make_fixtures
from tests.server.helpers import LiveServer, kinds, refused, run, session
from tests.server.serve_process import serve_process

TOKEN = "s3cret-token-123"
FRAMES = make_fixtures.build()
UNAUTHORIZED = "a valid access token is required (Authorization: Bearer or ?token=)"


@pytest.fixture
def guarded(make_server: Any) -> LiveServer:
    server: LiveServer = make_server(token=TOKEN)
    return server


def test_http_routes_refuse_a_missing_or_wrong_token(guarded: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{guarded.http}/api/health", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": {"code": "unauthorized", "message": UNAUTHORIZED}}
    assert httpx.get(f"{guarded.http}/api/recordings?token=nope").status_code == 401


def test_every_http_route_of_the_app_refuses_a_request_without_the_token(guarded: LiveServer) -> None:
    from starlette.routing import Route

    from server.app import create_app

    app = create_app(Settings(model="tiny", token=TOKEN), engine=None, loader=lambda ref: None)  # type: ignore[arg-type]
    paths = sorted({(re.sub(r"\{[^}]*\}", "x", route.path), method) for route in app.routes if isinstance(route, Route)
                    for method in sorted(route.methods or {"GET"}) if method != "HEAD"})
    answered = {(path, method): httpx.request(method, f"{guarded.http}{path}").status_code for path, method in paths}
    assert ("/api/recordings/x/video", "POST") in answered and ("/api/recordings/x/player.html", "GET") in answered
    assert {key: code for key, code in answered.items() if code != 401} == {}


def test_a_bearer_token_opens_the_http_routes(guarded: LiveServer) -> None:
    response = httpx.get(f"{guarded.http}/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.json()["model"] == "tiny"


def test_a_token_in_the_query_sets_a_cookie_that_opens_the_other_routes(guarded: LiveServer) -> None:
    with httpx.Client(base_url=guarded.http) as client:
        first = client.get(f"/api/health?token={TOKEN}")
        assert first.status_code == 200
        assert first.headers["set-cookie"] == f"medviz_token={TOKEN}; HttpOnly; SameSite=Strict; Path=/"
        assert client.get("/api/recordings").status_code == 200


def test_a_websocket_without_the_token_gets_an_error_frame_and_4001(guarded: LiveServer, sample_bytes: bytes) -> None:
    error, code, reason = run(refused(f"{guarded.ws}/ws/session"))
    assert error == frames.ErrorFrame("unauthorized", UNAUTHORIZED) and code == 4001
    assert reason == UNAUTHORIZED
    error, code, _ = run(refused(f"{guarded.ws}/ws/watch/abc?token=wrong"))
    assert (error.code, code) == ("unauthorized", 4001)


def test_after_a_bad_token_a_session_with_the_token_runs(guarded: LiveServer, sample_bytes: bytes) -> None:
    run(refused(f"{guarded.ws}/ws/session?token=bad"))
    data = run(_session_with_token(guarded, sample_bytes))
    assert kinds(data) == ["start", "step", "end"]


async def _session_with_token(server: LiveServer, image: bytes) -> list[bytes]:
    from websockets.asyncio.client import connect

    from tests.server.helpers import receive_all, start_bytes

    async with connect(f"{server.ws}/ws/session?token={TOKEN}") as ws:
        await ws.send(start_bytes(image, max_new_tokens=1))
        return await receive_all(ws)


def test_a_foreign_origin_is_refused_with_4003(live: LiveServer, sample_bytes: bytes) -> None:
    error, code, _ = run(refused(f"{live.ws}/ws/session", origin="https://evil.example"))
    assert error == frames.ErrorFrame("unauthorized", "origin 'https://evil.example' may not open websockets here")
    assert code == 4003
    assert kinds(run(session(live, sample_bytes, max_new_tokens=1))) == ["start", "step", "end"]


def test_a_same_host_or_loopback_origin_is_accepted(live: LiveServer, sample_bytes: bytes) -> None:
    from websockets.asyncio.client import connect

    from tests.server.helpers import receive_all, start_bytes

    async def scenario(origin: str) -> list[bytes]:
        async with connect(f"{live.ws}/ws/session", origin=Origin(origin)) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=1))
            return await receive_all(ws)

    assert kinds(run(scenario(f"http://127.0.0.1:{live.port}"))) == ["start", "step", "end"]
    assert kinds(run(scenario("http://localhost:3000"))) == ["start", "step", "end"]


def test_a_non_loopback_host_header_is_refused_on_a_loopback_bind(live: LiveServer) -> None:
    response = httpx.get(f"{live.http}/api/health", headers={"Host": "rebind.example:7860"})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "host 'rebind.example' is not served here; use 127.0.0.1 or localhost"


def test_a_public_bind_without_a_token_refuses_to_start() -> None:
    with pytest.raises(AuthError, match=r"^refusing to listen on 0.0.0.0 without a token: pass --token"):
        Settings(host="0.0.0.0").check()
    with pytest.raises(AuthError, match=r"^the token must be at least 8 characters; got 3$"):
        Settings(host="0.0.0.0", token="abc").check()
    assert Settings(host="0.0.0.0", token=TOKEN).check().token == TOKEN
    assert Settings(host="::1").check().host == "::1"


def test_token_comparison_and_origin_rules() -> None:
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, TOKEN[:-1]) and not token_matches(TOKEN, None)
    settings = Settings(allowed_origins=("https://viewer.example",))
    assert origin_allowed(settings, None, "127.0.0.1:7860")
    assert origin_allowed(settings, "http://127.0.0.1:7860", "127.0.0.1:7860")
    assert origin_allowed(settings, "https://viewer.example", "127.0.0.1:7860")
    assert not origin_allowed(settings, "null", "127.0.0.1:7860")
    assert not origin_allowed(settings, "http://127.0.0.1.evil.example", "127.0.0.1:7860")


@pytest.mark.parametrize("others", ['session={"a":1}', "theme=dark mode", 'a="b; c', "=x; ;broken", "theme"])
def test_the_cookie_login_works_beside_an_unrelated_malformed_cookie(guarded: LiveServer, others: str) -> None:
    for cookie in (f"{others}; medviz_token={TOKEN}", f"medviz_token={TOKEN}; {others}"):
        response = httpx.get(f"{guarded.http}/api/recordings", headers={"Cookie": cookie})
        assert response.status_code == 200, cookie


def test_a_quoted_cookie_value_and_a_second_cookie_header_are_read() -> None:
    assert cookie_value(f'theme=dark mode; medviz_token="{TOKEN}"', "medviz_token") == TOKEN
    assert cookie_value("medviz_tokenx=1; xmedviz_token=2", "medviz_token") is None
    assert cookie_value("a=1", "medviz_token") is None and cookie_value("", "medviz_token") is None
    scope = {"headers": [(b"cookie", b"theme=dark mode"), (b"cookie", f"medviz_token={TOKEN}".encode())]}
    assert provided_token(scope) == (TOKEN, False)


@pytest.mark.parametrize(("token", "held"), [
    ("geheim-€-token", "'€'"), ("секретный-токен", "'с'"), ("with a space", "' '"), ("semi;colon-token", "';'"),
    ('quote"token-12', "'\"'"), ("plus+sign-token", "'+'"), ("percent%20token", "'%'"),
])
def test_a_token_that_would_not_travel_unchanged_everywhere_is_refused_at_start_up(token: str, held: str) -> None:
    with pytest.raises(AuthError) as refusal:
        Settings(token=token).check()
    assert str(refusal.value) == ("the token may hold only letters A-Z a-z, digits and - . _ ~ (it travels unchanged "
                                  f"in links, cookies and headers); it holds {held}")


def test_the_characters_a_token_may_hold_work_as_header_query_and_cookie(make_server: Any) -> None:
    token = "Az09-._~tokenABC"
    server: LiveServer = make_server(token=token)
    assert httpx.get(f"{server.http}/api/recordings", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with httpx.Client(base_url=server.http) as client:
        assert client.get("/api/recordings", params={"token": token}).status_code == 200
        assert client.get("/api/recordings").status_code == 200  # the cookie it set


@pytest.mark.parametrize("sent", ["Bearer", "query", "cookie"])
def test_a_non_ascii_token_sent_to_the_server_is_401_never_500(guarded: LiveServer, sent: str) -> None:
    euro = "geheim-€-token"
    headers = {b"Authorization": f"Bearer {euro}".encode()} if sent == "Bearer" else (
        {b"Cookie": f"medviz_token={euro}".encode()} if sent == "cookie" else {})
    params = {"token": euro} if sent == "query" else {}
    response = httpx.get(f"{guarded.http}/api/recordings", headers=headers, params=params)
    assert (response.status_code, response.json()["error"]["message"]) == (401, UNAUTHORIZED)


def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_request_came_over_tls(guarded: LiveServer) -> None:
    response = httpx.get(f"{guarded.http}/api/health?token={TOKEN}", headers={"X-Forwarded-Proto": "https"})
    assert response.headers["set-cookie"] == f"medviz_token={TOKEN}; HttpOnly; SameSite=Strict; Path=/; Secure"


def test_a_loopback_start_without_a_token_gets_one_of_its_own_new_each_time() -> None:
    args = build_parser().parse_args(["serve"])
    first, second = (with_start_token(serve_settings(args)).check() for _ in range(2))
    assert first.token is not None and second.token is not None
    assert first.token != second.token and len(first.token) == len(second.token) == 32
    assert with_start_token(Settings(token=TOKEN)).token == TOKEN


def test_a_start_with_a_pacs_gets_a_pacs_key_of_its_own_new_each_time_unless_a_key_file_names_one(
        tmp_path: Path) -> None:
    pacs = ["serve", "--pacs", "http://127.0.0.1:1/dicom-web"]
    first, second = (with_start_token(serve_settings(build_parser().parse_args(pacs))).check() for _ in range(2))
    assert first.pacs_key is not None and second.pacs_key is not None
    assert first.pacs_key != second.pacs_key and len(first.pacs_key) == 32 and first.pacs_key != first.token
    assert with_start_token(serve_settings(build_parser().parse_args(["serve"]))).pacs_key is None  # no PACS
    key_file = tmp_path / "pacs.key"
    key_file.write_text("the-operators-pacs-key\n")
    given = serve_settings(build_parser().parse_args([*pacs, "--pacs-key-file", str(key_file)]))
    assert with_start_token(given).check().pacs_key == "the-operators-pacs-key"
    assert "the-operators-pacs-key" not in repr(given)


def test_a_pacs_key_that_is_the_token_or_short_or_odd_is_refused_at_start_up() -> None:
    refusals = []
    for key in (TOKEN, "short-key", "a pacs key with spaces"):
        with pytest.raises(AuthError) as refusal:
            Settings(token=TOKEN, pacs_key=key).check()
        refusals.append(str(refusal.value))
    assert refusals == ["the PACS key must differ from the token: every watch link carries the token",
                        "the PACS key must be at least 16 characters; got 9",
                        "the PACS key may hold only letters A-Z a-z, digits and - . _ ~ (it travels unchanged in "
                        "links, cookies and headers); it holds ' '"]


def test_a_bare_client_of_a_token_less_medviz_serve_gets_401_on_the_recordings_list_download_and_delete(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir(mode=0o700)
    with RecordingWriter(recordings / "patient_1.medviz") as writer:
        for name in ("start", "step", "end"):
            writer.write(FRAMES[name])
    with serve_process(["--model", "tiny", "--recordings", str(recordings)], tmp_path / "serve.log") as (port, line):
        link = re.search(rf" at (http://127\.0\.0\.1:{port}/\?token=([A-Za-z0-9_-]{{32}})) \(ready ", line)
        assert link is not None, line
        assert line.endswith("; open this link: its token is new with every start (--token T for a fixed one))")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/recordings").status_code == 401
        assert httpx.get(f"{base}/api/recordings/patient_1").status_code == 401
        assert httpx.get(f"{base}/api/recordings/patient_1/thumbnail").status_code == 401
        assert httpx.delete(f"{base}/api/recordings/patient_1").status_code == 401
        assert httpx.get(f"{base}/").status_code == 401
        error, code, _ = run(refused(f"ws://127.0.0.1:{port}/ws/replay/patient_1"))
        assert (error.code, code) == ("unauthorized", 4001)
        assert (recordings / "patient_1.medviz").exists()
        with httpx.Client() as browser:  # opening the printed link: the page, then its requests by the cookie
            assert browser.get(link.group(1)).status_code == 200
            listed = browser.get(f"{base}/api/recordings").json()["recordings"]
            assert [row["id"] for row in listed] == ["patient_1"]
        assert link.group(2) not in (tmp_path / "serve.log").read_text().replace(line, "")  # the access lines: redacted


CONTENT_ROUTES = [("GET", "/api/recordings/demo_2"), ("GET", "/api/recordings/demo_2/thumbnail"),
                  ("GET", "/api/recordings/demo_2/player.html"), ("POST", "/api/recordings/demo_2/video"),
                  ("GET", "/api/videos/AAAAAAAAAAAAAAAA")]


@pytest.fixture(scope="module")
def recorded(live: LiveServer) -> LiveServer:
    with RecordingWriter(live.settings.recordings / "demo_2.medviz") as writer:
        for name in ("start", "step", "end"):
            writer.write(FRAMES[name])
    return live


@pytest.mark.parametrize(("method", "path"), CONTENT_ROUTES)
def test_a_route_answering_with_a_recordings_content_refuses_a_foreign_origin(recorded: LiveServer, method: str,
                                                                            path: str) -> None:
    jobs = set(recorded.app.state.videos.jobs)
    answer = httpx.request(method, f"{recorded.http}{path}", headers={"Origin": "https://evil.example"})
    assert (answer.status_code, answer.json()) == (403, {"error": {
        "code": "unauthorized", "message": "origin 'https://evil.example' may not read recordings here"}})
    assert set(recorded.app.state.videos.jobs) == jobs  # no render was started


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:1234", "null"])
def test_a_recordings_download_goes_on_without_origin_or_from_a_loopback_page(recorded: LiveServer,
                                                                              origin: str | None) -> None:
    headers = {} if origin is None else {"Origin": origin}
    answer = httpx.get(f"{recorded.http}/api/recordings/demo_2", headers=headers)
    assert answer.status_code == (403 if origin == "null" else 200)
