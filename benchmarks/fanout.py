"""Fan-out: does watching slow the model? One live session on loopback, watched by 1 and by N viewers.

For each run, a real uvicorn server (in this process, on a free loopback port) streams one
session; its owner is viewer 1 and the others are load clients in a child process (websockets'
sans-I/O protocol on plain asyncio transports, reading each frame's type and timing only:
13-25 us of CPU a frame, where websockets' asyncio client took ~70) that join while the session
waits in line behind a blocker session, so all see it whole.
Prints, side by side in ONE run on the same model, image and token count:
- tokens/s of the generation (the engine's own timing, from the `end` frame) and its
  ratio many/one: the worker never waits on viewers, so it should stay near 1;
- frame delay per step and viewer: arrival time minus the moment the step was encoded
  (`created` + `t_ms`), p50 and p99 in ms, counting only steps encoded after that viewer
  joined (a late joiner's catch-up is not a delay);
- where the CPU went: seconds of CPU used by the server's event-loop thread (all sends to
  all viewers) and by the viewers' process during the run, and the event loop's cost per
  frame delivered to one viewer, in microseconds (Linux; from /proc).

The viewers' process shares the machine's cores with the server, so on a small machine the
many-viewer run also pays for its clients: a pessimistic measure. Speed lives here, never in tests.

With `--nodes N` the session runs on Redis instead (a redis-server on a free loopback port,
one RedisWorker in this process): the same session is watched by 200 and 400 viewers (or
--viewer-counts) split evenly over 1 and over N web nodes, each a process of its own (the
owner and a blocker on the first); it prints delivery (viewers that got the end), frame
delay p50/p99, and each web node's CPU seconds, frames delivered and microseconds of CPU
per delivered frame (its whole process: the Redis reads, the fan-out, the sends; the scheduler's
per-thread run time, to the nanosecond, from the moment the session may start until every viewer
has its end frame).

Usage: python benchmarks/fanout.py [--model tiny] [--viewers 200] [--tokens 48] [--json out.json]
       python benchmarks/fanout.py --nodes 2 [--viewer-counts 200,400] [--model tiny] [--tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.errors import ProtocolError  # noqa: E402
from medviz_core.wire import server_frames as frames  # noqa: E402
from medviz_core.wire.client_frames import CancelRequest, ParamsRequest, StartRequest  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"
BLOCKER_TOKENS = 2048
SERVER_THREAD = "medviz-uvicorn"  # the name server.background gives the server's thread


@dataclass
class RunResult:
    viewers: int
    tokens: int
    tokens_per_s: float
    delays_ms: list[float]
    complete: int  # viewers that received the end frame
    wall_s: float  # from the moment the measured session could start to its end
    loop_cpu_s: float  # the server's event-loop thread
    viewers_cpu_s: float  # the viewers' child process (0 with one viewer: the owner is here)
    frames_delivered: int


def _room_for_viewers() -> dict[str, Any]:
    """Socket caps past the viewer counts run here (the defaults, 128 watchers, would refuse the rest)."""
    return {"max_watch_sockets": 2048, "max_sockets": 2100, "max_connections": 2200}


def _stat_cpu_s(stat: str) -> float:
    """CPU seconds (user + system) in a /proc .../stat file (a process or one thread); NaN elsewhere."""
    import os

    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s(name: str) -> float:
    """CPU seconds of this process's thread called `name`; NaN where there is no /proc."""
    import threading

    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            return _stat_cpu_s(f"/proc/self/task/{thread.native_id}/stat")
    return float("nan")


Samples = tuple[float, list[tuple[float, float]], bool]  # (joined, [(arrived, emitted)], got the end)


@dataclass
class _Timings:
    """What one viewer saw of a session: when each step arrived and when it was emitted (`created` + `t_ms`).

    Only the type and timing are read (server_frames.peek_timing), not the typed frame: these clients stand
    for browsers on other machines, so the less CPU they take from the server's, the better.
    """

    joined: float
    created: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)

    def read(self, message: bytes, arrived: float) -> bool:
        """Take one frame that arrived at `arrived`; True when it is the end."""
        kind, at = frames.peek_timing(message)
        if kind == "start":
            self.created = at
        elif kind == "step" and self.created is not None and at is not None:
            self.samples.append((arrived, self.created + at / 1000.0))
        return kind == "end"

    def result(self, got_end: bool) -> Samples:
        return self.joined, self.samples, got_end


async def _follow(ws: ClientConnection, joined: float) -> Samples:
    """Read a session's frames on a websockets client (the owner's socket) until its end."""
    timings = _Timings(joined)
    async for message in ws:
        assert isinstance(message, bytes)
        if timings.read(message, time.time()):
            return timings.result(True)
    return timings.result(False)


class _LeanViewer(asyncio.Protocol):
    """One load viewer on websockets' sans-I/O client protocol, read straight from its transport.

    websockets' asyncio client costs ~70 us of CPU per message (its assembler, futures and task
    switches); these viewers stand for browsers on other machines and share this one's cores
    with the nodes, so they parse frames as bytes arrive (13-25 us) and read only type and timing.
    """

    def __init__(self, uri: str, loop: asyncio.AbstractEventLoop) -> None:
        self.protocol = ClientProtocol(parse_uri(uri), max_size=None)
        self.request = self.protocol.connect()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[Samples] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.timings = _Timings(joined=0.0)  # joined: set once the handshake is done
        self.parts: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.protocol.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self.protocol.receive_data(data)
        try:
            for event in self.protocol.events_received():
                if isinstance(event, Response):
                    self._opened(self.protocol.handshake_exc)
                elif isinstance(event, WsFrame) and event.opcode in (Opcode.BINARY, Opcode.CONT):
                    self.parts.append(bytes(event.data))
                    if event.fin:
                        message, self.parts = b"".join(self.parts), []
                        self._message(message, arrived)
                elif isinstance(event, WsFrame) and event.opcode is Opcode.TEXT:
                    raise ProtocolError("the server sent a text message; medviz frames are binary")
        except Exception as error:  # a bad frame fails this viewer, and so the run, as websockets' client would
            self._opened(error)
            self._settle(error)
            if self.transport is not None:
                self.transport.close()
            return
        self._flush()

    def _opened(self, error: BaseException | None) -> None:
        if self.opened.done():
            return
        if error is not None:
            self.opened.set_exception(error)
        else:
            self.timings.joined = time.time()
            self.opened.set_result(None)

    def _message(self, message: bytes, arrived: float) -> None:
        if self.timings.read(message, arrived):
            self._settle(None)

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.protocol.close_expected():
            self.transport.close()

    def _settle(self, outcome: BaseException | None, got_end: bool = True) -> None:
        """The viewer is done: with its samples (and whether it got the end), or failed with `outcome`."""
        if self.done.done():
            return
        if outcome is not None:
            self.done.set_exception(outcome)
        else:
            self.done.set_result(self.timings.result(got_end))

    def connection_lost(self, exc: Exception | None) -> None:
        self._opened(exc or ConnectionError("closed before the handshake"))
        self._settle(None, got_end=False)


async def _watch_many(urls: list[str], ready: Any) -> list[Samples]:
    loop = asyncio.get_running_loop()

    async def one(url: str) -> Samples:
        uri = parse_uri(url)
        _, viewer = await loop.create_connection(lambda: _LeanViewer(url, loop), uri.host, uri.port)
        await asyncio.wait_for(viewer.opened, 30)  # as websockets' own connect gives up on a silent server
        ready.put(1)
        return await viewer.done

    return list(await asyncio.gather(*(one(url) for url in urls)))


def _viewer_process(urls: list[str], ready: Any, results: Any, go: Any) -> None:
    """In a child process, so viewers do not share the server's interpreter lock."""
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    async def watch() -> tuple[list[Samples], float]:
        task = asyncio.ensure_future(_watch_many(urls, ready))
        while not go.is_set():  # the CPU clock starts when the measured session may start
            await asyncio.sleep(0.005)
        started = cpu()
        seen = await task
        return seen, cpu() - started

    results.put(asyncio.run(watch()))


async def _queued_session_id(port: int) -> str:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(500):
            listing = (await client.get(f"http://127.0.0.1:{port}/api/sessions")).json()["sessions"]
            queued = [s["id"] for s in listing if s["state"] == "queued"]
            if queued:
                return str(queued[0])
            await asyncio.sleep(0.01)
    raise RuntimeError("the measured session never showed up in /api/sessions")


@contextlib.asynccontextmanager
async def _blocked_session(base: str, port: int, image: bytes, tokens: int
                           ) -> AsyncIterator[tuple[ClientConnection, ClientConnection, str]]:
    """A blocker session holds the model while the measured one (its owner's socket, its id) waits in line, so
    viewers can join it whole; cancel the blocker to let it run."""
    async with connect(f"{base}/ws/session", max_size=None) as blocker:
        blocking = StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=BLOCKER_TOKENS))
        await blocker.send(blocking.to_wire())
        await _recv(blocker)
        async with connect(f"{base}/ws/session", max_size=None) as owner:
            request = StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=tokens, seed=0))
            await owner.send(request.to_wire())
            yield blocker, owner, await _queued_session_id(port)


def _delays_ms(seen: list[Samples]) -> list[float]:
    """Every step's delay to every viewer, counting only steps encoded after that viewer joined."""
    return [1000.0 * (arrived - emitted) for joined, samples, _ in seen for arrived, emitted in samples
            if emitted >= joined]


async def _session(port: int, image: bytes, viewers: int, tokens: int) -> RunResult:
    """A blocker session holds the model while the viewers join the queued measured one."""
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    base = f"ws://127.0.0.1:{port}"
    async with _blocked_session(base, port, image, tokens) as (blocker, owner, session_id):
        child = ctx.Process(target=_viewer_process, args=([f"{base}/ws/watch/{session_id}"] * (viewers - 1),
                                                          ready, results, go), daemon=True)
        if viewers > 1:
            child.start()
        for _ in range(viewers - 1):
            await asyncio.to_thread(ready.get, True, 120)
        loop_cpu, wall = _thread_cpu_s(SERVER_THREAD), time.monotonic()
        go.set()
        await blocker.send(CancelRequest().to_wire())
        mine = await _follow(owner, time.time())
        loop_cpu, wall = _thread_cpu_s(SERVER_THREAD) - loop_cpu, time.monotonic() - wall
    seen: list[Samples] = [mine]
    viewers_cpu = 0.0
    if viewers > 1:
        theirs, viewers_cpu = await asyncio.to_thread(results.get, True, 600)
        seen += theirs
        child.join(30)
    end = await _end_of(port, session_id)
    return RunResult(viewers=viewers, tokens=end["tokens"], tokens_per_s=_decode_rate(end),
                     delays_ms=_delays_ms(seen), complete=sum(1 for *_, ok in seen if ok), wall_s=wall,
                     loop_cpu_s=loop_cpu, viewers_cpu_s=viewers_cpu,
                     frames_delivered=sum(len(samples) for _, samples, _ in seen))


def _decode_rate(end: dict[str, Any]) -> float:
    """Tokens a second after the first (the end frame's total less the prefill, which made token 1)."""
    return max(end["tokens"] - 1, 0) / (max(end["total_ms"] - end["prefill_ms"], 1e-9) / 1000.0)


async def _end_of(port: int, session_id: str) -> dict[str, Any]:
    """The session's end frame, read back from its log through a late watcher."""
    async with connect(f"ws://127.0.0.1:{port}/ws/watch/{session_id}", max_size=None) as ws:
        async for message in ws:
            assert isinstance(message, bytes)
            frame = frames.decode(message)
            if isinstance(frame, frames.EndFrame):
                return {"tokens": frame.tokens, "total_ms": frame.total_ms, "prefill_ms": frame.prefill_ms}
    raise RuntimeError("the measured session has no end frame")


async def _recv(ws: ClientConnection) -> bytes:
    message = await ws.recv()
    assert isinstance(message, bytes)
    return message


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def _report(one: RunResult, many: RunResult, model: str) -> dict[str, Any]:
    rows = []
    for result in (one, many):
        rows.append({
            "viewers": result.viewers, "complete": result.complete, "tokens": result.tokens,
            "tokens_per_s": round(result.tokens_per_s, 2), "delay_samples": len(result.delays_ms),
            "delay_p50_ms": round(_percentile(result.delays_ms, 50), 2),
            "delay_p99_ms": round(_percentile(result.delays_ms, 99), 2),
            "wall_s": round(result.wall_s, 2), "server_loop_cpu_s": round(result.loop_cpu_s, 3),
            "viewers_process_cpu_s": round(result.viewers_cpu_s, 3),
            "loop_us_per_frame_per_viewer": round(1e6 * result.loop_cpu_s / max(result.frames_delivered, 1), 1),
        })
    return {"benchmark": "fanout", "model": model, "runs": rows,
            "tokens_per_s_ratio_many_over_one": round(many.tokens_per_s / max(one.tokens_per_s, 1e-9), 3)}


def _print_table(report: dict[str, Any]) -> None:
    print(f"fan-out on loopback, model {report['model']}")
    print(f"{'viewers':>8} {'got end':>8} {'tokens':>7} {'tokens/s':>9} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'wall s':>7} {'loop cpu s':>10} {'viewers cpu s':>13} {'loop us/frame':>13}")
    for row in report["runs"]:
        print(f"{row['viewers']:>8} {row['complete']:>8} {row['tokens']:>7} {row['tokens_per_s']:>9.2f} "
              f"{row['delay_samples']:>8} {row['delay_p50_ms']:>8.2f} {row['delay_p99_ms']:>8.2f}"
              f" {row['wall_s']:>7.2f} {row['server_loop_cpu_s']:>10.3f} {row['viewers_process_cpu_s']:>13.3f}"
              f" {row['loop_us_per_frame_per_viewer']:>13.1f}")
    print(f"tokens/s ratio, {report['runs'][1]['viewers']} viewers / 1 viewer: "
          f"{report['tokens_per_s_ratio_many_over_one']:.3f}")


# -- across web nodes (--nodes N): one session on Redis, its viewers split over 1 and N web nodes ---------------


def _node_process(settings: Any, ready: Any, stop: Any) -> None:
    """One web node in a process of its own (so its CPU is its own): a real uvicorn on the Redis."""
    import os

    from server.background import serve_in_background

    with serve_in_background(settings) as port:
        ready.put((port, os.getpid()))
        stop.wait()


def _process_cpu_s(pid: int) -> float:
    """CPU seconds of process `pid`, every thread, to the nanosecond (the scheduler's run time in
    /proc/PID/task/*/schedstat; /proc/PID/stat counts 10 ms ticks, too coarse for a short session's
    share of a node); NaN where there is no /proc."""
    total, read = 0, 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return float("nan")
    for task in tasks:  # a web node's threads live as long as it does: none ends during a session
        try:
            total += int((task / "schedstat").read_text().split()[0])
            read += 1
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9 if read else float("nan")  # no schedstat (a kernel without it): no figure, not 0


@dataclass
class NodesResult:
    nodes: int
    viewers: int
    tokens: int
    delays_ms: list[float]
    complete: int
    node_cpu_s: list[float]  # each web node's process, during the measured session
    node_frames: list[int]  # frames each node delivered to its viewers (the owner's on node 0)
    tokens_per_s: float  # the generation's own rate (end frame)
    viewers_cpu_s: float  # the viewers' process (they share this machine's cores with the nodes)


async def _nodes_session(ports: list[int], pids: list[int], image: bytes, viewers: int, tokens: int,
                         nodes: int) -> NodesResult:
    """As `_session`, with viewer i on web node i % `nodes`; the owner and the blocker on node 0."""
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    bases = [f"ws://127.0.0.1:{port}" for port in ports[:nodes]]
    async with _blocked_session(bases[0], ports[0], image, tokens) as (blocker, owner, session_id):
        urls = [f"{bases[i % nodes]}/ws/watch/{session_id}" for i in range(viewers - 1)]
        child = ctx.Process(target=_viewer_process, args=(urls, ready, results, go), daemon=True)
        child.start()
        for _ in urls:
            await asyncio.to_thread(ready.get, True, 120)
        cpu = [_process_cpu_s(pid) for pid in pids[:nodes]]
        go.set()
        await blocker.send(CancelRequest().to_wire())
        mine = await _follow(owner, time.time())
        theirs, viewers_cpu = await asyncio.to_thread(results.get, True, 600)
        cpu = [_process_cpu_s(pid) - before for pid, before in zip(pids, cpu)]  # once every viewer has the end
    child.join(30)
    seen: list[Samples] = [mine, *theirs]
    on_node = [0] + [i % nodes for i in range(len(theirs))]
    delivered = [sum(len(samples) for (_, samples, _), n in zip(seen, on_node) if n == node) for node in range(nodes)]
    end = await _end_of(ports[0], session_id)
    return NodesResult(nodes=nodes, viewers=viewers, tokens=end["tokens"], complete=sum(1 for *_, ok in seen if ok),
                       delays_ms=_delays_ms(seen), node_cpu_s=cpu, node_frames=delivered, viewers_cpu_s=viewers_cpu,
                       tokens_per_s=_decode_rate(end))


def _nodes_row(result: NodesResult) -> dict[str, Any]:
    per_frame = [round(1e6 * cpu / max(frames_, 1), 1) for cpu, frames_ in zip(result.node_cpu_s, result.node_frames)]
    return {"nodes": result.nodes, "viewers": result.viewers, "complete": result.complete, "tokens": result.tokens,
            "delay_samples": len(result.delays_ms), "delay_p50_ms": round(_percentile(result.delays_ms, 50), 2),
            "delay_p99_ms": round(_percentile(result.delays_ms, 99), 2),
            "node_cpu_s": [round(c, 3) for c in result.node_cpu_s], "node_frames": result.node_frames,
            "node_us_per_frame": per_frame, "tokens_per_s": round(result.tokens_per_s, 1),
            "viewers_process_cpu_s": round(result.viewers_cpu_s, 3)}


def _print_nodes(report: dict[str, Any]) -> None:
    print(f"fan-out across web nodes on loopback (Redis {report['redis']}), model {report['model']}, "
          f"{report['tokens']} tokens, one worker")
    print(f"{'nodes':>5} {'viewers':>8} {'got end':>8} {'tokens/s':>8} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8}  "
          f"{'node cpu s':>16} {'frames per node':>16} {'us/frame per node':>18} {'viewers cpu s':>13}")
    for row in report["runs"]:
        print(f"{row['nodes']:>5} {row['viewers']:>8} {row['complete']:>8} {row['tokens_per_s']:>8.1f} "
              f"{row['delay_samples']:>8} "
              f"{row['delay_p50_ms']:>8.2f} {row['delay_p99_ms']:>8.2f}  "
              f"{' '.join(f'{c:.3f}' for c in row['node_cpu_s']):>16} "
              f"{' '.join(str(f) for f in row['node_frames']):>16} "
              f"{' '.join(f'{u:.1f}' for u in row['node_us_per_frame']):>18} {row['viewers_process_cpu_s']:>13.3f}")


def run_nodes(model: str, image: bytes, nodes: int, viewer_counts: list[int], tokens: int) -> dict[str, Any]:
    """Redis (a redis-server on a free port), one in-process worker, `nodes` web-node processes."""
    import shutil
    import socket
    import subprocess
    import tempfile

    from medviz_core.models.load import load_engine
    from server.scale.worker import RedisWorker
    from server.settings import Settings

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--nodes needs Debian's redis-server (./dev test installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        redis_port = int(sock.getsockname()[1])
    folder = tempfile.mkdtemp(prefix="medviz-fanout-")
    redis_server = subprocess.Popen([binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    settings = Settings(model=model, recordings=Path(folder) / "recordings", max_new_tokens=BLOCKER_TOKENS,
                        redis_url=f"redis://127.0.0.1:{redis_port}/0", redis_insecure=True,  # its own, on loopback
                        **_room_for_viewers())
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    processes = [ctx.Process(target=_node_process, args=(settings, ready, stop), daemon=True) for _ in range(nodes)]
    worker = None
    try:
        time.sleep(0.3)
        import torch

        torch.set_num_threads(1)  # the model keeps to one core: the nodes and the viewers' process share the rest
        worker = RedisWorker(load_engine(model), settings).start()
        for process in processes:
            process.start()
        ports, pids = zip(*(ready.get(True, 120) for _ in processes))
        rows = []
        asyncio.run(_nodes_session(list(ports), list(pids), image, 2, 2, 1))  # warm-up
        for viewers in viewer_counts:
            for count in sorted({1, nodes}):
                rows.append(_nodes_row(asyncio.run(_nodes_session(list(ports), list(pids), image, viewers, tokens,
                                                                  count))))
    finally:
        stop.set()
        for process in processes:
            process.join(30)
        if worker is not None:
            worker.stop()
        redis_server.terminate()
        redis_server.wait(10)
    return {"benchmark": "fanout-nodes", "model": model, "tokens": tokens, "redis": "redis-server, loopback",
            "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--json", default=None, help="also write the JSON report here")
    parser.add_argument("--nodes", type=int, default=0,
                        help="N: one session on Redis, its viewers split over 1 and N web-node processes")
    parser.add_argument("--viewer-counts", default="200,400", help="with --nodes: viewer counts to run")
    args = parser.parse_args()
    if args.nodes:
        report = run_nodes(args.model, Path(args.image).read_bytes(), args.nodes,
                           [int(v) for v in args.viewer_counts.split(",")], args.tokens)
        _print_nodes(report)
        print(json.dumps(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        return
    from medviz_core.models.load import load_engine  # here, not at the top: the viewers' process re-imports this file
    from server.background import serve_in_background
    from server.settings import Settings

    engine = load_engine(args.model)
    image = Path(args.image).read_bytes()
    settings = Settings(model=args.model, recordings=Path("/nonexistent"), max_new_tokens=BLOCKER_TOKENS,
                        **_room_for_viewers())
    with serve_in_background(settings, engine) as port:
        asyncio.run(_session(port, image, 1, 2))  # warm-up: first-run costs out of the comparison
        one = asyncio.run(_session(port, image, 1, args.tokens))
        many = asyncio.run(_session(port, image, args.viewers, args.tokens))
    report = _report(one, many, args.model)
    _print_table(report)
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
