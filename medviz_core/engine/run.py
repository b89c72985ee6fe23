"""One streaming generation: the loop that yields a Step per token, and what each step needs.

Owns: `Run` (the iterator `Engine.stream` returns: prefill, then one decode step per token,
each Step's maps, statistics and context, and `end`, why it stopped), and the run's
machinery: `_Forward` (the model calls: eager with the batched capture, or compiled decode
steps) and `_Finisher` (where the host turns a step's reduced rows into a Step: inline, or
pipelined on a thread or in the engine's maps process while the model runs the next step).
It reads its engine only through `RunEngine`, the public surface a run needs (engine/engine.py
imports this module; this module never imports engine/engine.py). Does not own loading
(models/load.py), inputs (engine/engine.py, engine/inputs.py), the host's maps work
(maps/host_maps.py), the formulas (maps/relevancy.py) or the capture (engine/capture.py). Blocking torch code:
run it on one thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch

from medviz_core.engine import capture as capture_module
from medviz_core.engine.compiled import CompiledDecoder, CompileUnavailable
from medviz_core.engine.decoding import IncrementalText, TokenChooser
from medviz_core.engine.kv_cache import BufferCache
from medviz_core.maps.host_maps import (
    FinisherMode,
    HostMaps,
    MapsProcess,
    MapsProcessError,
    ReducedRows,
    StepPlan,
    host_maps,
)
from medviz_core.types import GenerationParams, ModelFacts, Prompt, Step, StreamEnd


class RunEngine(Protocol):
    """What a run needs of its engine, all of it public on engine.Engine (which imports this module, never
    the reverse): the model and its facts, where the maps are finished, and the compiled steps."""

    model: Any
    processor: Any
    device: torch.device
    grid: tuple[int, int]
    facts: ModelFacts
    eos_ids: frozenset[int]
    end_of_turn_id: int | None
    finisher: FinisherMode
    compile: bool
    text_config: Any
    cache_argument: str

    def maps_process_or_none(self) -> MapsProcess | None: ...

    def compiled_decoder(self, length: int, image_tokens: int) -> CompiledDecoder: ...

    def disable_compile(self) -> None: ...


class Run(Iterator[Step]):
    """One streaming generation. Iterate for Steps; `end` says how it finished."""

    def __init__(
        self,
        engine: RunEngine,
        inputs: Any,
        prompt: Prompt,
        params: GenerationParams,
        methods: tuple[str, ...],
        cancel: threading.Event,
    ) -> None:
        self.engine = engine
        self.inputs = inputs
        self.prompt = prompt
        self.params = params
        self.methods = methods
        self.wants_rollout = "rollout" in methods or "consensus" in methods
        self._not_text = np.zeros(len(prompt.token_ids), dtype=bool)  # image tokens and <bos>: not context
        self._not_text[list(prompt.layout.positions)] = True
        self._not_text[0] = True
        self.cancel = cancel
        self.end: StreamEnd | None = None
        self._steps: Generator[Step, None, None] = self._generate()

    def __iter__(self) -> Run:
        return self

    def __next__(self) -> Step:
        return next(self._steps)

    def close(self) -> None:
        """Stop early (as cancel does) and release the model's cache."""
        self.cancel.set()
        self._steps.close()
        if self.end is None:  # closed before the first step
            self.end = StreamEnd(reason="cancelled", tokens=0, text="", prefill_ms=0.0, total_ms=0.0)

    def _generate(self) -> Generator[Step, None, None]:
        engine, params = self.engine, self.params
        started = time.perf_counter()
        input_ids = self.inputs["input_ids"]
        prompt_len = int(input_ids.shape[1])
        # 1. Per-sequence state: the KV cache, the capture (rollout preallocated), the compiled step if asked,
        #    and where the host finishes the maps (at once, or while the device runs the next step).
        forward = _Forward(self, prompt_len)
        finisher: _Finisher | None = None
        chooser = TokenChooser(params, engine.device)
        text = IncrementalText(engine.processor)
        history = input_ids
        reason, message = "max_tokens", ""
        prefill_ms = 0.0
        totals = {"model_ms": 0.0, "maps_ms": 0.0}
        delivered: list[str] = []

        def deliver(step: Step | None) -> Iterator[Step]:
            if step is not None:
                totals["maps_ms"] += step.maps_ms
                delivered.append(step.text)
                yield step

        try:
            finisher = _Finisher(engine, self._plan(), self._assemble)
            for index in range(params.max_new_tokens):
                if self.cancel.is_set():
                    reason = "cancelled"
                    break
                # 2. Forward: the prefill over the whole prompt, then one token at a time.
                tick = time.perf_counter()
                logits, position = forward.step(index, history)
                # 3. Choose the token (repetition penalty and sampling as transformers does).
                token = chooser.choose(history, logits)
                model_ms = (time.perf_counter() - tick) * 1000.0
                prefill_ms = model_ms if index == 0 else prefill_ms
                totals["model_ms"] += model_ms
                # 4. Maps for the query that produced the token, from one transfer to the CPU.
                rows = forward.reduced(position)
                yield from deliver(finisher.submit(_Job(index, token, position, rows, text, model_ms)))
                # 5. Stop on EOS / end of turn, else feed the token back.
                if token in engine.eos_ids:
                    reason = "end_of_turn" if token == engine.end_of_turn_id else "eos"
                    break
                history = torch.cat([history, torch.tensor([[token]], device=history.device)], dim=1)
            if reason != "cancelled":
                yield from deliver(finisher.drain())
        except GeneratorExit:
            reason = "cancelled"
            raise
        except Exception as error:
            reason, message = "error", f"{type(error).__name__}: {error}"[:300]
            raise
        finally:
            if finisher is not None:
                finisher.close()
            self.end = StreamEnd(
                reason=reason,  # type: ignore[arg-type]
                tokens=len(delivered),
                text="".join(delivered),
                prefill_ms=prefill_ms,
                total_ms=(time.perf_counter() - started) * 1000.0,
                message=message,
                timings={**totals, "compile_s": forward.compile_seconds},
            )

    def _plan(self) -> StepPlan:
        return StepPlan(grid=self.engine.grid, images=tuple((image.label, image.size) for image in self.prompt.images),
                        methods=self.methods, wants_rollout=self.wants_rollout, not_text=self._not_text)

    def _assemble(self, job: _Job, done: HostMaps) -> Step:
        """The Step of a job whose maps are done: its text piece is taken here, in token order."""
        engine = self.engine
        final = job.token in engine.eos_ids or job.index + 1 == self.params.max_new_tokens
        return Step(
            index=job.index,
            token_id=job.token,
            text=job.text.add(job.token, final=final),
            position=job.position,
            images=done.images,
            image_mass=float(sum(f.share for f in done.images)),
            model_ms=job.model_ms,
            maps_ms=done.maps_ms,
            layers_seeing_image=job.rows.layers_seeing_image,
            is_special=job.token in engine.eos_ids,
            context=done.context,
            sink=done.sink,
        )


@dataclass(frozen=True)
class _Job:
    """One step's rows and what its Step needs besides the maps."""

    index: int
    token: int
    position: int
    rows: ReducedRows
    text: IncrementalText
    model_ms: float


class _Finisher:
    """Where the host turns a step's rows into a Step: inline, on one thread, or in the engine's maps process.

    Pipelined (thread or process), step k's maps and statistics are computed while the model
    runs step k+1, and `submit` hands back step k-1: the host's share of a step stops adding
    to the model's, for one step of latency. Steps come back in order, one at a time. A thread
    shares the interpreter lock with the thread issuing the model's operations, so only the
    process overlaps them when that thread is busy the whole step (maps/host_maps.py says more).
    """

    def __init__(self, engine: RunEngine, plan: StepPlan, assemble: Callable[[_Job, HostMaps], Step]) -> None:
        self.mode: FinisherMode = engine.finisher
        self.plan, self.assemble = plan, assemble
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medviz-maps") if self.mode == "thread" \
            else None
        self.process: MapsProcess | None = None
        if self.mode == "process":
            process = engine.maps_process_or_none()
            if process is None or not process.acquire():  # none could start, or another run on the engine holds it
                self.mode = "inline"
            else:
                self.process = process
                try:
                    process.begin(plan)
                except MapsProcessError:
                    process.release()
                    raise
        self.pending: tuple[_Job, Future[HostMaps] | None] | None = None  # the step handed on, not yet back

    def submit(self, job: _Job) -> Step | None:
        """Finish a step; return the step that is now ready (this one, or pipelined the one before)."""
        if self.mode == "inline":
            return self.assemble(job, host_maps(self.plan, job.rows))
        ready = self.drain()
        if self.executor is not None:
            self.pending = (job, self.executor.submit(host_maps, self.plan, job.rows))
        else:
            assert self.process is not None
            self.process.submit(job.rows)
            self.pending = (job, None)
        return ready

    def drain(self) -> Step | None:
        if self.pending is None:
            return None
        (job, future), self.pending = self.pending, None
        if future is not None:
            return self.assemble(job, future.result())
        assert self.process is not None
        return self.assemble(job, self.process.result())

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        self.pending = None  # the process's owed result is read and dropped when its next run begins
        if self.process is not None:
            self.process.release()


class _Forward:
    """The model calls of one run: eager (BufferCache, batched capture) or compiled decode steps (compiled.py)."""

    def __init__(self, run: Run, prompt_len: int) -> None:
        engine, facts = run.engine, run.engine.facts
        self.owner, self.engine, self.prompt_len = run, engine, prompt_len
        length = prompt_len + run.params.max_new_tokens
        self.decoder = engine.compiled_decoder(length, len(run.prompt.layout.positions)) if engine.compile else None
        if self.decoder is not None:
            self.decoder.reset()
        cache: Any = self.decoder.cache if self.decoder is not None else BufferCache(engine.text_config, length)
        self.cache = cache
        self.image_positions = torch.tensor(run.prompt.layout.positions, device=engine.device)
        self.capture = capture_module.Capture(
            layers=facts.layers, heads=facts.heads, image_positions=self.image_positions,
            max_length=cache.buffer.max_length, rollout=run.wants_rollout or self.decoder is not None,
            device=engine.device, cache=cache, rollout_buffer=None if self.decoder is None else self.decoder.rollout,
        )
        self.compile_seconds = 0.0
        self._packed: torch.Tensor | None = None

    def step(self, index: int, history: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Forward the prompt (index 0) or the last token; return the next-token logits [1, vocab] and q."""
        engine = self.engine
        q_start = 0 if index == 0 else self.prompt_len + index - 1
        if index > 0 and self.decoder is not None:
            try:
                output = self.decoder.step(int(history[0, -1]), q_start, self.image_positions)
                self.compile_seconds = self.decoder.compile_seconds
                self._packed = output.packed
                if output.queries is not None:
                    with torch.inference_mode():
                        self.capture.finish_decode(output.queries, output.scalings, q_start)
                return output.logits, q_start
            except CompileUnavailable as error:
                print(f"[medviz] {error}", file=sys.stderr, flush=True)
                engine.disable_compile()
                self.decoder = None
        kwargs: dict[str, Any] = ({**self.owner.inputs} if index == 0 else
                                  {"input_ids": history[:, -1:], "attention_mask": torch.ones_like(history)})
        kwargs[engine.cache_argument] = self.cache
        q_len = int(kwargs["input_ids"].shape[1])
        self._packed = None
        with torch.inference_mode(), self.capture.forward(q_start, q_len):
            output = engine.model(**kwargs, use_cache=True, logits_to_keep=1)
            self.capture.finish()
        return output.logits[:, -1, :], q_start + q_len - 1

    def reduced(self, position: int) -> ReducedRows:
        """This step's rows for the maps, in one transfer to the CPU."""
        if self._packed is None:
            return self.capture.reduced(position)
        facts = self.engine.facts
        seeing = sum(1 for first in self.cache.visible_from(position + 1) if first <= self.capture.first_image)
        rows = capture_module.unpack_rows(self._packed.cpu().numpy(), facts.layers, facts.heads,
                                          self.capture.n_image, True, self.cache.buffer.max_length, seeing)
        return replace(rows, context=rows.context[: position + 1])
