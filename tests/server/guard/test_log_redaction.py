"""guard/log_redaction.py on a real uvicorn with its own formatters: no token in any spelling, no lost access line."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from server.guard.log_redaction import RedactTokens, redact
from server.settings import Settings
from tests.server.helpers import refused, run, serve

TOKEN = "s3cret-Token_value"


def every_byte_encoded(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8"))


SPELLINGS = [f"token={TOKEN}", f"%74oken={TOKEN}", f"%74%6F%6B%65%6E={every_byte_encoded(TOKEN)}",
             f"x=1&token={quote(TOKEN)}&y=2", f"TOKEN={TOKEN}", f"%2574oken={TOKEN}"]


def test_tokens_never_reach_uvicorns_logs_in_any_spelling_and_every_access_line_stays(
    tiny_engine: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    settings = Settings(model="tiny", recordings=tmp_path, token=TOKEN)
    with serve(settings, tiny_engine, log_level="info", log_stream=stream) as server:
        statuses = [httpx.get(f"{server.http}/api/health?{query}").status_code for query in SPELLINGS]
        error, code, _ = run(refused(f"{server.ws}/ws/watch/nope?%74oken={TOKEN}"))
    logged = stream.getvalue()
    assert statuses == [200, 200, 200, 200, 401, 401]  # the server reads %74oken as token, as parse_qs does
    assert (error.code, code) == ("not_found", 4404)
    assert TOKEN not in logged and TOKEN not in unquote(unquote(logged))
    assert "Logging error" not in logged + capsys.readouterr().err
    access = [line for line in logged.splitlines() if '"GET /api/health?' in line]
    assert len(access) == len(SPELLINGS) and all("=***" in line for line in access)
    assert any('"WebSocket /ws/watch/nope?%74oken=***"' in line for line in logged.splitlines())


def test_a_record_keeps_its_arguments_so_the_access_formatter_can_unpack_them() -> None:
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/api/health?%74oken={TOKEN}&x=1", "1.1", 200), None)
    RedactTokens((TOKEN,)).filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '127.0.0.1:5 - "GET /api/health?%74oken=***&x=1 HTTP/1.1" 200 OK'


@pytest.mark.parametrize(("text", "expected"), [
    ("/ws/watch/abc?token=s3cret&x=1", "/ws/watch/abc?token=***&x=1"),
    ("/?a=1;%54OKEN=s3cret", "/?a=1;%54OKEN=***"),
    ("/a?b=%73%33cret", "/a?***"),  # the secret in another parameter still goes
    ("/s3cret/x", "[a line holding a credential was redacted (9 characters)]"),
])
def test_redact_masks_every_spelling_of_the_token_and_of_the_secret(text: str, expected: str) -> None:
    assert redact(text, ("s3cret",)) == expected


def test_a_pacs_key_is_masked_like_the_token_and_a_pacs_path_keeps_only_its_routes_words() -> None:
    assert redact("GET /?token=T0ken-1&pacs_key=K3y-2 HTTP/1.1") == "GET /?token=***&pacs_key=*** HTTP/1.1"
    assert redact("/?%70acs_KEY=K3y-2") == "/?%70acs_KEY=***"
    assert redact("GET /api/pacs/studies?patient_id=P-1&patient_name=DOE%5EJANE&accession=A-9 HTTP/1.1") == (
        "GET /api/pacs/studies?*** HTTP/1.1")
    assert redact("/api/pacs/studies/1.2.840.1/series/1.2.840.2/instances/1.2.840.3/thumbnail") == (
        "/api/pacs/studies/***/series/***/instances/***/thumbnail")
    assert redact("/api/pacs/sendable?recording=r-1") == "/api/pacs/sendable?***"
    assert redact("/api/pacs") == "/api/pacs"
    assert redact("/api/recordings?x=1") == "/api/recordings?x=1"
