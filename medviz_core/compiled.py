"""The opt-in compiled decode path: a static KV cache and the whole decode step under torch.compile.

Owns: `CompiledDecoder`, which holds, for one engine and one (length bucket, image count),
a `StaticBufferCache`, a persistent rollout buffer and a compiled function
`step(token, position, image_positions) -> (logits, packed rows)` that runs the model's
decode forward, the attention capture and the reduction of the maps' rows in one graph
with fixed shapes (on CUDA with CUDA graphs, `mode="reduce-overhead"`; inductor on the
CPU). The masks of every layer come from the position tensor (causal, and the window in
sliding layers), so nothing in the graph depends on a Python int that changes per token.
The prefill stays eager (engine.py) and writes the same cache and rollout buffer.
`plain_step` is the same decode without the capture, for the benchmark. Does not own the
generation loop (engine.py) or the maps' formulas (relevancy.py).

When compiling fails (no C compiler, an unsupported op), `CompileUnavailable` says why in
one line and the engine falls back to the eager path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .capture import QueryCollector, pack_rows
from .kv_cache import StaticBufferCache

LENGTH_BUCKET = 256  # cache lengths are rounded up to this, so sessions share compiled graphs


class CompileUnavailable(RuntimeError):
    """torch.compile could not compile the decode step here; the message says why, in one line."""


def bucket(length: int) -> int:
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


class CompiledDecoder:
    """A compiled decode step for one engine, cache length and number of image tokens."""

    def __init__(self, engine: Any, max_length: int, image_tokens: int, capture: bool = True) -> None:
        self.engine = engine
        text = engine.model.config.get_text_config()
        self.layers, self.heads = int(text.num_hidden_layers), int(text.num_attention_heads)
        self.max_length = max_length
        self.image_tokens = image_tokens
        self.capture = capture
        device = engine.device
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

    def _masks(self, position: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per layer kind the model's [1, 1, 1, key] masks, and every layer's [layer, 1, key] visible keys."""
        keys = self._positions[None, :]
        visible = (keys <= position) & (keys > position - self._windows[:, None])
        by_kind = {kind: visible[self._kinds.index(kind)].view(1, 1, 1, -1) for kind in set(self._kinds)}
        return by_kind, visible[:, None, :]

    def _step(self, token: torch.Tensor, position: torch.Tensor, image_positions: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        masks, visible = self._masks(position)
        output = self.engine.model(input_ids=token, position_ids=position.view(1, 1), attention_mask=masks,
                                   use_cache=True, logits_to_keep=1, **{self.engine._cache_kwarg: self.cache})
        logits = output.logits[:, -1].float()  # [1, vocab]
        if not self.capture:
            return logits, logits[:, :1]
        return logits, self._reduce(position, visible, image_positions)

    def _reduce(self, position: torch.Tensor, visible: torch.Tensor, image_positions: torch.Tensor) -> torch.Tensor:
        """Capture.finish and Capture.reduced for a static cache, as one piece of the graph."""
        queries = torch.stack(self._collector.queries)  # type: ignore[arg-type]  # [layer, head, dim]
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

    def step(self, token: int, position: int, image_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One compiled decode step; the first call compiles (timed in `compile_seconds`)."""
        device = self.engine.device
        token_t = torch.tensor([[token]], device=device)
        position_t = torch.tensor([position], device=device)
        self.attach()
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                result = self._compiled(token_t, position_t, image_positions)
        except Exception as error:  # torch.compile's failures have no common base class
            raise CompileUnavailable(_explain(error)) from error
        finally:
            self.detach()
        if not self._warm:
            self.compile_seconds = time.perf_counter() - started
            self._warm = True
        logits, packed = result
        if not self.capture:
            return logits, packed
        rows = self.layers * self.image_tokens
        self.rollout[1:, position] = packed[-rows:].view(self.layers, self.image_tokens)
        return logits, packed[:-rows]


def _explain(error: Exception) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (f"torch.compile could not compile the decode step here ({type(error).__name__}: {first}); "
            f"running eagerly")
