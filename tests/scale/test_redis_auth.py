"""`--redis` refuses a password-less Redis unless `--redis-insecure`, and takes the password from MEDVIZ_REDIS or a
file, never from the command line (other local users read /proc/PID/cmdline). Real redis-servers, with and without
`requirepass`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.cli.main import main
from server.scale.auth import INSECURE_HINT, RedisAuthError, redis_url, require_auth
from server.scale.keys import Keys
from server.scale.worker import RedisWorker
from tests.conftest import REPO
from tests.scale.conftest import REDIS_SERVER, Cluster, RedisServer
from tests.server.helpers import kinds, run, session

ON_COMMAND_LINE = ("medviz: a Redis URL on the command line must not carry the password (other local users read it in "
                   "/proc/PID/cmdline): put the whole URL in MEDVIZ_REDIS, or the password in --redis-password-file\n")


@pytest.fixture
def open_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis that answers anyone (no requirepass)."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server on this machine")
    server = RedisServer(tmp_path, password=None).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_password_less_redis_is_refused_unless_insecure_is_asked(open_redis: RedisServer, tiny_engine: Any,
                                                                   cluster: Cluster) -> None:
    where = f"127.0.0.1:{open_redis.port}"
    with pytest.raises(RedisAuthError) as refused:
        require_auth(open_redis.url, insecure=False)
    assert refused.value.message == f"the Redis at {where} accepts commands without a password; {INSECURE_HINT}"
    with pytest.raises(RedisAuthError):  # a password in the URL does not make an open Redis closed
        require_auth(f"redis://:anything@{where}/0", insecure=False)
    with pytest.raises(RedisAuthError):
        RedisWorker(tiny_engine, replace(cluster.settings, redis_url=open_redis.url))
    require_auth(open_redis.url, insecure=True)


def test_with_redis_insecure_a_password_less_redis_serves_sessions(open_redis: RedisServer, tiny_engine: Any,
                                                                   cluster: Cluster, sample_bytes: bytes) -> None:
    a = cluster.node(redis_url=open_redis.url, redis_insecure=True)
    cluster.worker(tiny_engine, redis_url=open_redis.url, redis_insecure=True)
    assert kinds(run(session(a, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]


def test_a_redis_with_a_password_takes_only_the_right_one(redis_server: RedisServer) -> None:
    where = f"127.0.0.1:{redis_server.port}"
    require_auth(redis_server.url, insecure=False)
    with pytest.raises(RedisAuthError) as none:
        require_auth(f"redis://{where}/0", insecure=True)
    assert none.value.message == (f"the Redis at {where} needs a password and the URL has none: put it in "
                                  "MEDVIZ_REDIS or --redis-password-file")
    with pytest.raises(RedisAuthError) as wrong:
        require_auth(f"redis://:wrong@{where}/0", insecure=False)
    assert wrong.value.message == (f"the Redis at {where} refused medviz's credentials: check the password "
                                   "(MEDVIZ_REDIS or --redis-password-file)")


def test_the_password_comes_from_a_file_or_the_environment_never_from_the_flag(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("p@ss:word/1\n")
    assert redis_url("redis://10.0.0.5:6379/0", None, str(secret)) == "redis://:p%40ss%3Aword%2F1@10.0.0.5:6379/0"
    assert redis_url(None, "redis://medviz@10.0.0.5/1", str(secret)) == "redis://medviz:p%40ss%3Aword%2F1@10.0.0.5/1"
    assert redis_url(None, "redis://:pw@10.0.0.5/0", None) == "redis://:pw@10.0.0.5/0"  # MEDVIZ_REDIS: a whole URL
    assert redis_url(None, None, None) is None
    for flag, sets in (("redis://:pw@10.0.0.5/0", ()), (None, ("redis_url=redis://:pw@h/0",)),
                       ("redis://h/0?password=pw", ())):
        with pytest.raises(RedisAuthError):
            redis_url(flag, None, None, sets)
    (tmp_path / "empty").write_text("")
    with pytest.raises(RedisAuthError) as empty:
        redis_url("redis://h/0", None, str(tmp_path / "empty"))
    assert empty.value.message == (f"the Redis password file {str(tmp_path / 'empty')!r} is empty; its first line "
                                   "is the password")


def test_medviz_worker_and_serve_refuse_a_password_on_the_command_line_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MEDVIZ_REDIS", raising=False)
    assert main(["worker", "--model", "tiny", "--redis", "redis://:hunter22@127.0.0.1:1/0"]) == 2
    assert capsys.readouterr().err == ON_COMMAND_LINE
    assert main(["serve", "--model", "tiny", "--set", "redis_url=redis://:hunter22@127.0.0.1:1/0"]) == 2
    assert capsys.readouterr().err == ON_COMMAND_LINE


def test_medviz_worker_reads_the_password_from_a_file_and_it_is_not_in_proc_cmdline(
        redis_server: RedisServer, tmp_path: Path) -> None:
    assert redis_server.password is not None
    secret = tmp_path / "redis-password"
    secret.write_text(redis_server.password + "\n")
    environment = {k: v for k, v in os.environ.items() if k != "MEDVIZ_REDIS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "worker", "--model", "tiny", "--recordings", str(tmp_path / "r"),
         "--redis", f"redis://127.0.0.1:{redis_server.port}/0", "--redis-password-file", str(secret)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        client = redis_server.client()
        deadline = time.monotonic() + 90
        while not client.zcard(Keys().workers):
            assert process.poll() is None and time.monotonic() < deadline, "medviz worker did not start"
            time.sleep(0.1)
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert redis_server.password.encode() not in command_line
        assert b"--redis-password-file" in command_line
    finally:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
