"""Generation workers as Ray Serve replicas: one RedisWorker per replica, one GPU each, placed and restarted by Ray.

Owns: the `MedvizWorker` deployment (`WORKER`; each replica loads the model and runs a
worker.RedisWorker on a thread; `check_health` fails once that thread has stopped,
so Serve replaces the replica; a replica killed outright is replaced too, and its session
is ended by the reclaim rule of scale/queue.py), `build(args)` (the application for
`serve run server.scale.ray_app:build redis=URL model=REF replicas=N gpus=G recordings=DIR`),
`app` (the same from MEDVIZ_REDIS, MEDVIZ_MODEL, MEDVIZ_REPLICAS, MEDVIZ_GPUS,
MEDVIZ_RECORDINGS, MEDVIZ_REDIS_PASSWORD_FILE and MEDVIZ_REDIS_INSECURE, for
`serve run server.scale.ray_app:app`) and `start_workers` (what `medviz serve --ray` runs: joins
RAY_ADDRESS or starts a local Ray, then deploys). The replicas get no HTTP route: web nodes
reach them only through Redis. Does not own the
worker (scale/worker.py) or the web node (scale/sessions.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import serve

from server.scale.auth import redis_url
from server.settings import DEFAULT_MODEL, Settings, default_recordings

log = logging.getLogger("medviz.ray")

APP_NAME = "medviz-workers"


class MedvizWorker:
    """One replica: a model and a Redis worker on its own thread."""

    def __init__(self, settings: Settings) -> None:
        from medviz_core.models.load import load_engine
        from server.scale.worker import RedisWorker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        context = serve.get_replica_context()
        self.worker = RedisWorker(load_engine(settings.model), settings, name=f"ray-{context.replica_id.unique_id}")
        self.thread = threading.Thread(target=self.worker.run, name="medviz-redis-worker", daemon=True)
        self.thread.start()

    def check_health(self) -> None:
        if not self.thread.is_alive():
            raise RuntimeError(f"worker {self.worker.name} stopped taking jobs")

    def status(self) -> dict[str, Any]:
        """Who this replica is (tests and operators)."""
        return {"name": self.worker.name, "pid": os.getpid(), "served": self.worker.served,
                "model": self.worker.facts.name, "device": self.worker.facts.device}

    def __del__(self) -> None:  # Serve stops a replica by ending its actor
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.stop(timeout=5)


WORKER = serve.deployment(name="MedvizWorker", health_check_period_s=5, health_check_timeout_s=30,
                          graceful_shutdown_timeout_s=20)(MedvizWorker)


def gpus_default() -> float:
    """1 per replica where the cluster (or, before one is joined, this machine) has a GPU, else 0."""
    import ray

    if ray.is_initialized():
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def build(args: Mapping[str, str]) -> Any:
    """The Serve application: `redis` (required), `model`, `replicas`, `gpus`, `recordings`, `redis_password_file`
    (the password: the file's first line, on every node of the cluster), `redis_insecure` (1: a password-less
    Redis is accepted)."""
    if not args.get("redis"):
        raise ValueError("the medviz workers need redis=redis://host:port/db (the password in "
                         "redis_password_file=FILE, or the whole URL in MEDVIZ_REDIS)")
    url = redis_url(None, args["redis"], args.get("redis_password_file") or None)
    folder = Path(args["recordings"]) if args.get("recordings") else default_recordings()
    settings = Settings(model=args.get("model", DEFAULT_MODEL), redis_url=url, recordings=folder.resolve(),
                        redis_insecure=args.get("redis_insecure", "").lower() in ("1", "true", "yes"))
    gpus = float(args["gpus"]) if args.get("gpus") not in (None, "") else gpus_default()
    return deployment(settings, int(args.get("replicas", 1)), gpus)


def deployment(settings: Settings, replicas: int, gpus: float) -> Any:
    options = {"num_gpus": gpus, "num_cpus": 1 if gpus else 0.5}
    return WORKER.options(num_replicas=replicas, ray_actor_options=options).bind(settings)


def start_workers(settings: Settings, replicas: int = 1, gpus: float | None = None) -> Any:
    """Deploy the workers for a web node's settings on RAY_ADDRESS (or a local Ray); returns the handle."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False)
    chosen = gpus_default() if gpus is None else gpus
    worker_settings = replace(settings, recordings=settings.recordings.resolve())
    log.info("deploying %d medviz worker(s) with %g GPU(s) each", replicas, chosen)
    return serve.run(deployment(worker_settings, replicas, chosen), name=APP_NAME, route_prefix=None)


ARGS = ("redis", "model", "replicas", "gpus", "recordings", "redis_password_file", "redis_insecure")


def _from_environment() -> Any:
    """The application from the MEDVIZ_* variables; None without MEDVIZ_REDIS (importing stays cheap)."""
    args = {key: os.environ[f"MEDVIZ_{key.upper()}"] for key in ARGS if os.environ.get(f"MEDVIZ_{key.upper()}")}
    return build(args) if "redis" in args else None


app = _from_environment()  # `MEDVIZ_REDIS=... serve run server.scale.ray_app:app`
