"""The Redis URL's credentials: where they come from (never the command line) and the check that they are needed.

Owns: `redis_url` (the URL of `--redis` or `MEDVIZ_REDIS`, with the password of
`--redis-password-file` put in; a password in the `--redis` flag itself is refused, as other
local users read a process's command line in /proc/PID/cmdline) and `require_auth` (run at
connect by every web node and worker: the URL's own credentials must be accepted, and the
same Redis without them must refuse commands, NOAUTH, unless `redis_insecure` says a
password-less Redis is wanted, e.g. a test's, or one on loopback of a one-user box). The
check is made against the real server, not the URL's text: a URL with a password on a Redis
that accepts anyone is just as open. Does not own the clients (keys.connect).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis

from medviz_core.errors import MedvizError

CHECK_S = 10.0  # how long a start-up keeps trying a Redis that does not answer yet
INSECURE_HINT = ("give Redis a password (requirepass, or an ACL user) and put it in MEDVIZ_REDIS or "
                 "--redis-password-file; --redis-insecure accepts a password-less Redis (tests, a one-user box)")


class RedisAuthError(MedvizError):
    """A Redis URL or server whose credentials medviz refuses (one line: never the password)."""


def redis_url(flag: str | None, environment: str | None, password_file: str | None,
              sets: Iterable[str] = ()) -> str | None:
    """The URL to use: `--redis` (no password in it, nor in a `--set redis_url=...` of `sets`) or else
    `MEDVIZ_REDIS` (a whole URL), with the first line of `password_file` as its password if given. None: no
    Redis (sessions in this process)."""
    given = [flag or "", *(item.partition("=")[2] for item in sets if item.strip().startswith("redis_url"))]
    if any(_password(url) for url in given):
        raise RedisAuthError("a Redis URL on the command line must not carry the password (other local users read "
                             "it in /proc/PID/cmdline): put the whole URL in MEDVIZ_REDIS, or the password in "
                             "--redis-password-file")
    url = flag or environment or None
    if password_file is None:
        return url
    if url is None:
        raise RedisAuthError("--redis-password-file needs a Redis URL too (--redis or MEDVIZ_REDIS)")
    try:
        lines = Path(password_file).expanduser().read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise RedisAuthError(f"cannot read the Redis password file {password_file!r}: "
                             f"{getattr(error, 'strerror', None) or type(error).__name__}") from None
    if not lines or not lines[0]:
        raise RedisAuthError(f"the Redis password file {password_file!r} is empty; its first line is the password")
    return with_password(url, lines[0])


def with_password(url: str, password: str) -> str:
    """`url` with `password` (and its user name, if any) as its credentials."""
    parts = urlsplit(url)
    user = quote(parts.username or "", safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def without_credentials(url: str) -> str:
    """`url` with no user name or password (in its address or its query)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("password", "username")]
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=urlencode(query)))


def require_auth(url: str, insecure: bool) -> None:
    """Refuse (RedisAuthError) a Redis that rejects the URL's credentials, or that answers without any unless
    `insecure`. A Redis that does not answer is tried for CHECK_S, then refused too (a start-up, never a wait)."""
    deadline = time.monotonic() + CHECK_S
    while True:
        try:
            return _check(url, insecure)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if time.monotonic() >= deadline:
                raise RedisAuthError(f"the session store (Redis) at {_where(url)} does not answer "
                                     f"({type(error).__name__}); start it first") from None
            time.sleep(0.25)


def _check(url: str, insecure: bool) -> None:
    own = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    bare = redis.Redis.from_url(without_credentials(url), socket_connect_timeout=2, socket_timeout=5)
    try:
        try:
            own.ping()
        except (redis.AuthenticationError, redis.ResponseError) as error:
            if isinstance(error, redis.ResponseError) and "NOAUTH" not in str(error):
                raise
            if not _password(url):
                raise RedisAuthError(f"the Redis at {_where(url)} needs a password and the URL has none: put it in "
                                     "MEDVIZ_REDIS or --redis-password-file") from None
            raise RedisAuthError(f"the Redis at {_where(url)} refused medviz's credentials: check the password "
                                 "(MEDVIZ_REDIS or --redis-password-file)") from None
        if insecure:
            return
        try:
            bare.ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return  # NOAUTH: a password is required
        raise RedisAuthError(f"the Redis at {_where(url)} accepts commands without a password; {INSECURE_HINT}")
    finally:
        own.close()
        bare.close()


def _password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or any(k == "password" for k, _ in parse_qsl(parts.query))


def _where(url: str) -> str:
    parts = urlsplit(without_credentials(url))
    return parts.netloc or parts.path or "?"
