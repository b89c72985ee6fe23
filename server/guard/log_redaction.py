"""Credentials never reach a log line: the access token is redacted in every spelling before formatting.

Owns: `redact` (a query parameter whose name decodes to `token`, however it is
percent-encoded or cased, has its value replaced by `***`; a configured token still found
in the decoded line takes the whole query string with it), `RedactTokens` (a logging
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
MASK = "***"


def _decoded(text: str) -> str:
    """Percent-decoded until it no longer changes (a doubly encoded name is still a name)."""
    for _ in range(5):
        plain = unquote_plus(text)
        if plain == text:
            break
        text = plain
    return text


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every token parameter's value, and any spelling of `secrets`, masked."""
    def mask(match: re.Match[str]) -> str:
        if _decoded(match["name"]).strip().lower() != "token":
            return match[0]
        return f"{match['sep']}{match['name']}={MASK}"

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


def log_config(token: str | None, stream: IO[str] | None = None) -> dict[str, Any]:
    """uvicorn's logging configuration, with RedactTokens on both handlers (and `stream` for
    both, instead of stderr / stdout, when given: tests read it)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactTokens, "secrets": (token,) if token else ()}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
        if stream is not None:
            handler["stream"] = stream
    return config
