"""A step's host work: its reduced rows -> each image's maps and statistics and the context links.

Owns: `StepPlan` (what every step of one run shares: the grid, the images, the methods, the
not-text mask), `ReducedRows` (one step's attention rows as engine/capture.py hands them to the host,
torch-free so the child reads them as they are), `HostMaps` (one step's result), `host_maps`
(the work itself, a pure function of the two), `context_links`, and `MapsProcess`, one child
process per engine that runs `host_maps` for the pipelined path. In a thread the work would
share the interpreter lock with the thread that issues the model's operations, which at batch 1
is busy for the whole step (an eager step on a GPU, a small model on a CPU): the thread then
costs as much time as running the work inline (measured on `tiny`: a thread made a stream slower
than inline). A process runs it beside the model for the price of sending the rows and the
result (up to a few hundred KB for four images of a large model). Torch-free: the child imports
numpy and OpenCV only. Does not own the formulas (maps/relevancy.py, maps/regions.py) or turning a result
into a Step (engine/run.py: the token's text is the run's own incremental state).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import numpy as np

from medviz_core.errors import MedvizError
from medviz_core.maps.regions import compute_stats
from medviz_core.maps.relevancy import compute_maps
from medviz_core.types import ContextLink, ImageFocus

CONTEXT_LINKS = 8
FinisherMode = Literal["inline", "thread", "process"]  # where a run computes its steps' maps (run._Finisher)


@dataclass(frozen=True)
class StepPlan:
    """What the host needs for every step of one run besides the step's own rows."""

    grid: tuple[int, int]
    images: tuple[tuple[str, tuple[int, int]], ...]  # (label, (width, height)) of each image, in prompt order
    methods: tuple[str, ...]
    wants_rollout: bool
    not_text: np.ndarray  # [position]: True for image tokens and <bos>, which are not context


@dataclass(frozen=True)
class ReducedRows:
    """One step's attention, reduced on the device and moved to the CPU: what relevancy.compute_maps takes."""

    layer_means: np.ndarray  # [layer, image]: m[l][I], the head mean of the query's attention to every image token
    last_heads: np.ndarray  # [head, image]: A[L-1][h][I]
    rollout: np.ndarray | None  # [image]: R[L-1][q, I], None when rollout is off
    layers_seeing_image: int
    context: np.ndarray  # [key]: mean_l m[l][j] for keys j = 0..q, the attention to every position


@dataclass(frozen=True)
class HostMaps:
    """One step's maps, statistics and context, and the host's time for them."""

    images: tuple[ImageFocus, ...]
    context: tuple[ContextLink, ...]
    sink: float
    maps_ms: float


def host_maps(plan: StepPlan, rows: ReducedRows) -> HostMaps:
    """Each image's maps and statistics from one step's reduced rows, and its context."""
    tick = time.perf_counter()
    n = plan.grid[0] * plan.grid[1]
    focus = []
    for block, (label, size) in enumerate(plan.images):
        cells = slice(block * n, (block + 1) * n)
        rollout = None if rows.rollout is None or not plan.wants_rollout else rows.rollout[cells]
        flat, share = compute_maps(rows.layer_means[:, cells], rows.last_heads[:, cells], rollout, plan.methods)
        by_name = {name: flat[name].reshape(plan.grid) for name in plan.methods}
        stats_map = by_name["consensus"] if "consensus" in by_name else by_name[plan.methods[-1]]
        focus.append(ImageFocus(label, by_name, compute_stats(stats_map, size), share))
    links, sink = context_links(rows.context, plan.not_text)
    return HostMaps(tuple(focus), links, sink, (time.perf_counter() - tick) * 1000.0)


def context_links(row: np.ndarray, not_text: np.ndarray) -> tuple[tuple[ContextLink, ...], float]:
    """The CONTEXT_LINKS text positions the query attended most (mean over layers and heads), and <bos>'s share.

    `row` holds mean_l m[l][j] for every key j = 0..q; image positions and position 0 (the
    attention sink, reported apart as the second value) are left out of the links. Ties keep
    the lower position first.
    """
    values = np.asarray(row, dtype=np.float64)
    excluded = np.zeros(len(values), dtype=bool)
    excluded[: len(not_text)] = not_text[: len(values)]
    candidates = np.flatnonzero(~excluded)
    top = candidates[np.argsort(-values[candidates], kind="stable")[:CONTEXT_LINKS]]
    links = tuple(ContextLink(position=int(j), value=float(values[j])) for j in top)
    return links, float(values[0]) if len(values) else 0.0


class MapsProcessError(MedvizError):
    """The maps process failed a step or ended."""


class MapsProcess:
    """One child process that runs `host_maps` for one run at a time, its results in the order of the rows.

    A run `acquire`s it (False while another run holds it: that run then computes its maps
    inline, so two runs interleaved on one engine never mix results) and `release`s it when it
    ends; `begin(plan)` starts the run's steps, `submit(rows)` sends a step's rows without
    waiting, `result()` returns the oldest step not yet returned (blocking until it is done).
    Parent and child take turns: a step's rows are sent only after the step before it came
    back. The child is a fresh interpreter with the parent's import path: multiprocessing's
    "spawn" would re-run the caller's main script in it (a script without a __main__ guard
    would stream again) and "fork" would copy a process that holds CUDA. It imports numpy and
    OpenCV, not torch, and ends when this side of its socket closes (this process exiting too).
    """

    def __init__(self) -> None:
        if getattr(sys, "frozen", False) or not sys.executable:
            raise MapsProcessError("the maps process needs a Python interpreter to start (this one is frozen or "
                                   "embedded)")
        mine, theirs = socket.socketpair()
        env = {**os.environ, "MEDVIZ_MAPS_PATH": os.pathsep.join(sys.path)}
        code = ("import os, sys; sys.path[:] = os.environ['MEDVIZ_MAPS_PATH'].split(os.pathsep); "
                f"from medviz_core.maps.host_maps import serve; serve({theirs.fileno()})")
        try:
            self._process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),), env=env,
                                             stdin=subprocess.DEVNULL)
        except OSError as error:
            mine.close()
            raise MapsProcessError(f"the maps process could not start: {error}") from None
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        self.pending = 0  # rows sent whose result has not been read
        self.held = False

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._process.pid

    def acquire(self) -> bool:
        if self.held:
            return False
        self.held = True
        return True

    def release(self) -> None:
        self.held = False

    def begin(self, plan: StepPlan) -> None:
        """The holder's new run: results still owed to its last one (a cancelled run's) are read and dropped."""
        while self.pending:
            self._read()
        self._send(("plan", plan))

    def submit(self, rows: ReducedRows) -> None:
        self._send(("rows", rows))  # numpy arrays in a torch-free type: the child reads them without torch
        self.pending += 1

    def result(self) -> HostMaps:
        answer = self._read()
        if isinstance(answer, str):
            raise MapsProcessError(f"the maps process failed a step: {answer}")
        return answer

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._conn.close()

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError) as error:
            raise self._ended() from error

    def _read(self) -> HostMaps | str:
        try:
            answer: HostMaps | str = self._conn.recv()
        except (EOFError, OSError) as error:
            self.pending = 0
            raise self._ended() from error
        self.pending -= 1
        return answer

    def _ended(self) -> MapsProcessError:
        try:
            code = self._process.wait(1)  # reaped, so its exit code is known
        except subprocess.TimeoutExpired:
            code = None
        return MapsProcessError(f"the maps process ended unexpectedly (exit code {code})")


def serve(fd: int) -> None:
    """The child's loop on socket `fd`: a plan, then rows, each answered with its HostMaps (or the error's words)."""
    conn = Connection(fd)
    plan: StepPlan | None = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind, body = message
        if kind == "plan":
            plan = body
            continue
        try:
            if plan is None:
                raise RuntimeError("rows came before a plan")
            answer: HostMaps | str = host_maps(plan, body)
        except Exception as error:  # the parent raises it for this step; the child serves the next run
            answer = f"{type(error).__name__}: {error}"[:300]
        try:
            conn.send(answer)
        except OSError:  # the parent is gone
            return
