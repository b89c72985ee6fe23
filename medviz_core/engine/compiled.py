"""The opt-in compiled decode path: a static KV cache and the whole decode step under torch.compile.

Owns: `CompiledDecoder`, which holds, for one engine and one (length bucket, image count),
a `StaticBufferCache`, a persistent rollout buffer and a compiled function
`step(token, position, image_positions) -> DecodeOutput` that runs the model's
decode forward and the attention capture in one graph with fixed shapes (on CUDA with CUDA
graphs, `mode="reduce-overhead"`; inductor on the CPU). The reduction of the maps' rows
(one function, `_reduce`) runs inside that graph on CUDA, where every launch it saves
counts, and eagerly right after it on the CPU, where inductor turns its thin batched
products (one query row against every key) into loops slower than the BLAS calls eager
makes. The masks of every layer come from the position tensor (causal, and the window in
sliding layers), so nothing in the graph depends on a Python int that changes per token.
The prefill stays eager (engine/run.py) and writes the same cache and rollout buffer.
With `capture=False` it is the same decode without the capture, for the benchmark. `DecoderEngine`
names what it needs of an engine. Does not own the
generation loop (engine/run.py) or the maps' formulas (maps/relevancy.py).

When compiling fails (no C compiler, an unsupported op), `CompileUnavailable` says why in
one line and the run falls back to the eager path (`Engine.disable_compile`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch

from medviz_core.engine.capture import QueryCollector, pack_rows
from medviz_core.engine.kv_cache import StaticBufferCache

LENGTH_BUCKET = 256  # cache lengths are rounded up to this, so sessions share compiled graphs


class DecodeOutput(NamedTuple):
    """One compiled decode step: the logits [1, vocab], and the capture's share, one of two ways: the packed
    rows reduced in the graph (capture.pack_rows' layout), or every layer's query row [layer, head, dim] for
    `Capture.finish_decode` to reduce eagerly. Neither without the capture."""

    logits: torch.Tensor
    packed: torch.Tensor | None = None
    queries: torch.Tensor | None = None
    scalings: tuple[float, ...] = ()  # each layer's attention scaling, with `queries`


class CompileUnavailable(RuntimeError):
    """torch.compile could not compile the decode step here; the message says why, in one line."""


def bucket(length: int) -> int:
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


class DecoderEngine(Protocol):
    """What a compiled decode step needs of its engine (engine.Engine): the model, where and in what dtype it
    runs, and the name of the forward's cache argument."""

    @property
    def model(self) -> Any: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def cache_argument(self) -> str: ...


class CompiledDecoder:
    """A compiled decode step for one engine, cache length and number of image tokens."""

    def __init__(self, engine: DecoderEngine, max_length: int, image_tokens: int, capture: bool = True,
                 reduce_in_graph: bool = True) -> None:
        self.engine = engine
        text = engine.model.config.get_text_config()
        self.layers, self.heads = int(text.num_hidden_layers), int(text.num_attention_heads)
        self.max_length = max_length
        self.image_tokens = image_tokens
        self.capture = capture
        device = engine.device
        self.reduce_in_graph = reduce_in_graph
        self.cache = StaticBufferCache(text, max_length, engine.dtype, device)
        self.rollout = torch.zeros(self.layers + 1, max_length, image_tokens, device=device)  # [layer+1, pos, image]
        self._positions = torch.arange(max_length, device=device)  # [key]
        self._windows = torch.tensor([w if w is not None else max_length + 1 for w in self.cache.windows],
                                     device=device)  # [layer]
        self._kinds = list(getattr(text, "layer_types", None) or ["full_attention"] * self.layers)
        self._half_tril = 0.5 * torch.tril(torch.ones(self.layers, self.layers, device=device))
        self._collector = QueryCollector(self.layers, collect=capture)
        self._modules = [m for m in engine.model.modules() if getattr(m, "layer_idx", None) is not None
                         and hasattr(m, "q_proj")][: self.layers]
        for tensor in (self.cache.buffer.keys, self.cache.buffer.values, self.rollout):
            torch._dynamo.mark_static_address(tensor)
        mode = "reduce-overhead" if device.type == "cuda" else None
        self._compiled: Callable[..., tuple[torch.Tensor, torch.Tensor]] = torch.compile(
            self._step, mode=mode, fullgraph=True, dynamic=False
        )
        self.compile_seconds = 0.0
        self._warm = False

    # The graph -----------------------------------------------------------------------------------------------

    def _visible(self, position: torch.Tensor) -> torch.Tensor:
        """Every layer's [layer, key] keys the query at `position` sees: causal, and the window in sliding layers."""
        keys = self._positions[None, :]
        return (keys <= position) & (keys > position - self._windows[:, None])

    def _masks(self, position: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per layer kind the model's [1, 1, 1, key] mask."""
        visible = self._visible(position)
        return {kind: visible[self._kinds.index(kind)].view(1, 1, 1, -1) for kind in set(self._kinds)}

    def _step(self, token: torch.Tensor, position: torch.Tensor, image_positions: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.engine.model(input_ids=token, position_ids=position.view(1, 1),
                                   attention_mask=self._masks(position),
                                   use_cache=True, logits_to_keep=1, **{self.engine.cache_argument: self.cache})
        logits = output.logits[:, -1].float()  # [1, vocab]
        if not self.capture:
            return logits, logits[:, :1]
        queries = torch.stack(self._collector.queries)  # type: ignore[arg-type]  # [layer, head, dim]
        if not self.reduce_in_graph:
            return logits, queries
        return logits, self._reduce(queries, position, image_positions)

    def _reduce(self, queries: torch.Tensor, position: torch.Tensor, image_positions: torch.Tensor) -> torch.Tensor:
        """Capture.finish and Capture.reduced for a static cache: the packed rows, then the rollout rows."""
        visible = self._visible(position)[:, None, :]  # [layer, 1, key]
        keys = self.cache.buffer.keys  # [layer, kv_head, key, dim]
        assert keys is not None
        layers, heads, dim = queries.shape
        kv_heads = keys.shape[1]
        scores = torch.matmul(keys, queries.view(layers, kv_heads, heads // kv_heads, dim).transpose(-1, -2))
        scores = scores.transpose(-1, -2).reshape(layers, heads, -1).float() * self._collector.scalings[0]
        probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)  # [layer, head, key]
        head_rows = probs[:, :, image_positions]  # [layer, head, image]
        mean = probs.mean(1)  # [layer, key]
        # The rollout row of the new query (capture.Capture._fold_rollout_row): rows > q are zero, row q too.
        stored = torch.bmm(mean[:, None, :], self.rollout[: self.layers])[:, 0]  # [layer, image]
        growth = 0.5 + 0.5 * mean.gather(1, position.view(1, 1).expand(layers, 1))[:, 0]  # [layer]
        logs = torch.cumsum(torch.log(growth), dim=0)
        row = (torch.exp(logs[:, None] - logs[None, :]) * self._half_tril) @ stored  # [layer, image]
        # The row is written back by `step`, outside the graph: an in-graph write into the persistent buffer
        # would make the graph copy all of it.
        return torch.cat([pack_rows(head_rows, row[-1], mean.mean(0), []), row.flatten()])

    # Use -----------------------------------------------------------------------------------------------------

    def attach(self) -> None:
        """Route the text layers' query rows to this decoder's collector (compiled steps only)."""
        for module in self._modules:
            module._medviz_collector = self._collector

    def detach(self) -> None:
        for module in self._modules:
            module._medviz_collector = None

    def reset(self) -> None:
        """Ready for a new sequence: the cache empty, the rollout zero (Capture writes its first rows)."""
        self.cache.reset()

    def step(self, token: int, position: int, image_positions: torch.Tensor) -> DecodeOutput:
        """One compiled decode step; the first call compiles (timed in `compile_seconds`)."""
        device = self.engine.device
        token_t = torch.tensor([[token]], device=device)
        position_t = torch.tensor([position], device=device)
        self.attach()
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                logits, rows = self._compiled(token_t, position_t, image_positions)
        except Exception as error:  # torch.compile's failures have no common base class
            raise CompileUnavailable(_explain(error)) from error
        finally:
            self.detach()
        if not self._warm:
            self.compile_seconds = time.perf_counter() - started
            self._warm = True
        if not self.capture:
            return DecodeOutput(logits)
        if not self.reduce_in_graph:
            return DecodeOutput(logits, queries=rows, scalings=tuple(self._collector.scalings))
        rollout_rows = self.layers * self.image_tokens
        self.rollout[1:, position] = rows[-rollout_rows:].view(self.layers, self.image_tokens)
        return DecodeOutput(logits, packed=rows[:-rollout_rows])


def _explain(error: Exception) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (f"torch.compile could not compile the decode step here ({type(error).__name__}: {first}); "
            f"running eagerly")
