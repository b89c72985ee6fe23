"""Fixtures for the scale-out tests: a real redis-server on a free loopback port, web nodes and workers on it.

No fakes: `redis_server` runs Debian's redis-server (without persistence, so a restart loses
everything, as a crashed Redis without a disk would) and stops it by its PID; `cluster`
starts web nodes (real uvicorn servers with `redis_url`) and in-process RedisWorkers on it,
each worker with an engine of its own, and stops them all after the test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from server.scale.worker import RedisWorker
from server.settings import Settings
from tests.server.helpers import LiveServer, serve

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, with a password (as medviz requires) unless `password` is
    None; `restart` keeps the port and the password and loses the data. The password is in its config file,
    never on its command line."""

    folder: Path
    port: int = field(default_factory=free_port)
    password: str | None = field(default_factory=lambda: secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{f':{self.password}@' if self.password else ''}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        config = self.folder / f"redis-{self.port}.conf"
        config.write_text(f"requirepass {self.password}\n" if self.password else "")
        config.chmod(0o600)
        self.process = subprocess.Popen(
            [REDIS_SERVER, str(config), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--protected-mode", "yes"], stdout=subprocess.DEVNULL)
        client = self.client(socket_connect_timeout=1)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, **options)

    @contextlib.contextmanager
    def commands(self) -> Iterator[list[str]]:
        """Every command clients sent meanwhile, as Redis's MONITOR prints it (read on a thread); the commands
        a script runs inside Redis are left out."""
        seen: list[str] = []
        monitor = self.client().monitor().__enter__()  # MONITOR is on before the block runs

        def read() -> None:
            with contextlib.suppress(redis.RedisError, ValueError, OSError, AttributeError):
                for command in monitor.listen():
                    if command.get("client_type") != "lua":
                        seen.append(str(command["command"]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield seen
        finally:
            time.sleep(0.2)  # what was sent just before the end is printed too
            monitor.connection.disconnect()
            reader.join(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server on this machine (./dev test installs Debian's)")
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def second_engine() -> Any:
    """A tiny engine for a second worker (an engine serves one worker thread)."""
    from medviz_core.models.load import load_engine

    return load_engine("tiny")


@dataclass
class Cluster:
    settings: Settings
    stack: contextlib.ExitStack
    redis: RedisServer

    def node(self, **overrides: Any) -> LiveServer:
        """A web node on the cluster's Redis (no engine: it loads none)."""
        return self.stack.enter_context(serve(replace(self.settings, **overrides), None))

    def worker(self, engine: Any, **overrides: Any) -> RedisWorker:
        worker = RedisWorker(engine, replace(self.settings, **overrides)).start()
        self.stack.callback(worker.stop)
        return worker


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    settings = Settings(model="tiny", recordings=tmp_path / "recordings", redis_url=redis_server.url,
                        heartbeat_s=0.2, reclaim_s=1.5, redis_wait_s=3.0, max_new_tokens=64)
    with contextlib.ExitStack() as stack:
        yield Cluster(settings, stack, redis_server)


