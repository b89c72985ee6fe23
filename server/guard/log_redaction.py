"""Credentials and patient identifiers never reach a log line: tokens, PACS keys and PACS queries are redacted.

Owns: `redact` (a query parameter whose name decodes to `token` or `pacs_key`, however it is
percent-encoded or cased, has its value replaced by `***`; a configured secret still found
in the decoded line takes the whole query string with it; a /api/pacs path loses its query
(patient ID, name, accession) and every segment that is not one of the routes' own words (study,
series and SOP instance UIDs): `/api/pacs/studies/***/series?***`), `RedactTokens` (a logging
filter that redacts a record's message and each of its arguments in place, keeping their
number and types, so uvicorn's access formatter still finds its five arguments) and
`log_config` (uvicorn's logging configuration with the filter on every handler). Does not
own what uvicorn logs or where (uvicorn, cli/commands.py).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import IO, Any
from urllib.parse import unquote_plus

from uvicorn.config import LOGGING_CONFIG

PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#\s\"']+)=(?P<value>[^&;#\s\"']*)")
QUERY = re.compile(r"\?[^\s\"']*")
PACS_PATH = re.compile(r"/api/pacs(?P<rest>[/?][^\s\"']*)?", re.IGNORECASE)
PACS_WORDS = frozenset({"studies", "series", "instances", "thumbnail", "sendable", "send"})  # pacs_routes.ROUTES
SECRET_PARAMS = frozenset({"token", "pacs_key"})
MASK = "***"


def _pacs_path(match: re.Match[str]) -> str:
    """A /api/pacs path as a log line may hold it: the routes' own words, every other segment and the query masked."""
    path, question, _ = (match["rest"] or "").partition("?")
    segments = [s if s.lower() in PACS_WORDS or not s else MASK for s in path.split("/")]
    return "/api/pacs" + "/".join(segments) + (f"?{MASK}" if question else "")


def _decoded(text: str) -> str:
    """Percent-decoded until it no longer changes (a doubly encoded name is still a name)."""
    for _ in range(5):
        plain = unquote_plus(text)
        if plain == text:
            break
        text = plain
    return text


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every token and PACS key parameter's value, any spelling of `secrets`, and the patient identifiers
    of a /api/pacs path (its query, its UIDs) masked."""
    def mask(match: re.Match[str]) -> str:
        if _decoded(match["name"]).strip().lower() not in SECRET_PARAMS:
            return match[0]
        return f"{match['sep']}{match['name']}={MASK}"

    text = PACS_PATH.sub(_pacs_path, text)
    text = PARAM.sub(mask, text)
    for secret in secrets:
        if secret and secret in _decoded(text):
            text = QUERY.sub(f"?{MASK}", text)
            if secret in _decoded(text):  # not in a query string either: drop the whole line's content
                return f"[a line holding a credential was redacted ({len(text)} characters)]"
    return text


class RedactTokens(logging.Filter):
    """Masks tokens in a record's message and arguments; the record keeps its shape."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self.secrets)
        if isinstance(record.args, tuple):
            record.args = tuple(self._value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._value(arg) for key, arg in record.args.items()}
        return True

    def _value(self, arg: object) -> object:
        return redact(arg, self.secrets) if isinstance(arg, str) else arg


def log_config(secrets: tuple[str | None, ...], stream: IO[str] | None = None) -> dict[str, Any]:
    """uvicorn's logging configuration, with RedactTokens (the token, the PACS key) on both handlers (and `stream`
    for both, instead of stderr / stdout, when given: tests read it)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactTokens, "secrets": tuple(s for s in secrets if s)}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
        if stream is not None:
            handler["stream"] = stream
    return config
