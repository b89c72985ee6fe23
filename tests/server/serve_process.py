"""A real `medviz serve` in a child process for the tests that need the command itself (its printed
address, its per-start token): started on a free loopback port, read until it says it serves, stopped
with SIGINT (then killed if it lingers)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_line(proc: subprocess.Popen[bytes], log: Path, deadline: float) -> str:
    """The line `medviz serve` prints once it accepts connections."""
    while time.monotonic() < deadline and proc.poll() is None:
        lines = [line for line in log.read_text().splitlines() if line.startswith("medviz: serving")]
        if lines:
            return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"medviz serve did not say it serves:\n{log.read_text()[-3000:]}")


def link_token(line: str) -> str:
    """The token of the link in a `medviz: serving ... at http://HOST:PORT/?token=T[&pacs_key=K] (ready ...` line."""
    found = re.search(r"/\?token=([A-Za-z0-9_-]+)(&pacs_key=[A-Za-z0-9_-]+)? \(ready ", line)
    assert found is not None, line
    return found.group(1)


def link_pacs_key(line: str) -> str:
    """The PACS key of the operator's link a `medviz serve --pacs` printed (`...&pacs_key=K (ready ...`)."""
    found = re.search(r"/\?token=[A-Za-z0-9_-]+&pacs_key=([A-Za-z0-9_-]+) \(ready ", line)
    assert found is not None, line
    return found.group(1)


@contextlib.contextmanager
def serve_process(options: list[str], log: Path) -> Iterator[tuple[int, str]]:
    """`medviz serve --port P *options`, its output in `log`; yields (P, the line it printed once serving)."""
    port = free_port()
    command = [sys.executable, "-m", "server.cli.main", "serve", "--port", str(port), *options]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield port, served_line(proc, log, time.monotonic() + START_S)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
