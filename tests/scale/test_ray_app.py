"""Workers as Ray Serve replicas on a real local Ray (loopback, CPU, the tiny model), fed through a real Redis.

One Ray cluster and one deployment of two replicas for the module (Ray's start is the slow part)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from medviz_core.wire import server_frames as frames
from server.scale.keys import Keys
from server.scale.queue import WORKER_STOPPED
from server.settings import Settings
from tests.scale.conftest import REDIS_SERVER, RedisServer
from tests.server.helpers import LiveServer, kinds, receive_all, recv, run, serve, session, session_of, start_bytes

ray = pytest.importorskip("ray")
KEYS = Keys()
REPLICAS = 2


@dataclass
class RayCluster:
    redis: RedisServer
    settings: Settings
    node: LiveServer


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server on this machine (./dev test installs Debian's)")
    from ray import serve as ray_serve

    from server.scale.ray_app import deployment

    folder = tmp_path_factory.mktemp("ray")
    redis_server = RedisServer(folder).start()
    settings = Settings(model="tiny", recordings=folder / "recordings", redis_url=redis_server.url,
                        heartbeat_s=0.2, reclaim_s=1.5, max_new_tokens=64)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        ray_serve.start(proxy_location="Disabled")
        ray_serve.run(deployment(settings, REPLICAS, gpus=0), name="medviz-workers", route_prefix=None)
        client = redis_server.client()
        deadline = time.monotonic() + 120
        while client.zcard(KEYS.workers) < REPLICAS:
            assert time.monotonic() < deadline, "the replicas did not register in Redis"
            time.sleep(0.1)
        with serve(settings, None) as node:
            yield RayCluster(redis_server, settings, node)
    finally:
        with contextlib.suppress(Exception):
            ray_serve.shutdown()
        ray.shutdown()
        redis_server.stop()


def _holder(cluster: RayCluster, session_id: str) -> str:
    return cluster.redis.client().hget(KEYS.session(session_id), "worker").decode()


def test_two_replicas_serve_two_sessions_at_once(ray_cluster: RayCluster, sample_bytes: bytes) -> None:
    node = ray_cluster.node

    async def scenario() -> list[list[bytes]]:
        async with connect(f"{node.ws}/ws/session", max_size=None) as one, \
                connect(f"{node.ws}/ws/session", max_size=None) as two:
            for ws in (one, two):
                await ws.send(start_bytes(sample_bytes, max_new_tokens=16))
            seen = await asyncio.gather(receive_all(one), receive_all(two))
        return list(seen)

    seen = run(scenario())
    assert [kinds(s) for s in seen] == [["start", *["step"] * 16, "end"]] * 2  # neither waited: no `queued`
    holders = {_holder(ray_cluster, session_of(s[0])) for s in seen}
    assert len(holders) == 2 and all(h.startswith("ray-") for h in holders)
    first_ended = min(frames.decode(s[0]).created + frames.decode(s[-1]).total_ms / 1000 for s in seen)
    assert max(frames.decode(s[0]).created for s in seen) < first_ended  # both ran at once


def test_a_replica_killed_mid_session_ends_it_with_an_error_and_the_next_session_is_served(
        ray_cluster: RayCluster, sample_bytes: bytes) -> None:
    node = ray_cluster.node

    async def killed() -> tuple[list[bytes], int | None]:
        async with connect(f"{node.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=64))
            got = [await recv(ws), await recv(ws)]
            holder = _holder(ray_cluster, session_of(got[0]))
            pid = int(ray_cluster.redis.client().hget(KEYS.worker(holder), "pid"))
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)
            return got + await receive_all(ws), ws.close_code

    seen, code = run(killed())
    error = frames.decode(seen[-1])
    assert isinstance(error, frames.ErrorFrame) and (error.message, code) == (WORKER_STOPPED, 4500)
    assert kinds(run(session(node, sample_bytes, max_new_tokens=2))) == ["start", "step", "step", "end"]


def test_the_deployment_asks_one_gpu_per_replica_where_there_are_gpus_and_none_on_the_cpu(tmp_path: Path) -> None:
    from server.scale.ray_app import build

    settings = {"redis": "redis://127.0.0.1:1/0", "model": "tiny", "recordings": str(tmp_path)}
    on_gpus = build({**settings, "replicas": "4", "gpus": "1"})
    on_cpu = build({**settings, "gpus": "0"})
    assert (on_gpus._bound_deployment.num_replicas, on_gpus._bound_deployment.ray_actor_options["num_gpus"]) == (4, 1)
    assert (on_cpu._bound_deployment.num_replicas, on_cpu._bound_deployment.ray_actor_options["num_gpus"]) == (1, 0)
