"""Attention capture through transformers' AttentionInterface: the model runs SDPA, we read rows.

Owns: the `medviz` attention and mask functions registered with transformers, and
`Capture`, the per-run state that they fill: for the current query position, every text
layer's per-head attention to the image tokens, and the incremental rollout state
(docs/relevancy.md, method 5). Does not own: turning those into maps (maps/relevancy.py) or the
generation loop (engine/run.py).

How it stays cheap and exact:
- SDPA (the model's own kernel) computes the attention output; greedy tokens are the
  model's. We recompute softmax(q k^T * scaling + mask) in float32 only for what the
  methods need: the last query row in every layer (every step), and the full head-mean
  matrix once at prefill, folded straight into the rollout state (never stored).
- The mask function always materialises the boolean mask (no "is_causal" shortcut), so
  the probabilities we compute see exactly the mask the model used: Gemma 3's
  bidirectional image block at prefill and its sliding windows.
- Keys come from the cache, so in sliding layers the key index j is absolute position
  `j + total - kv_len` (docs/model-facts.md). Image keys outside that range have probability 0.
- Everything stays on the model's device in preallocated tensors; nothing is accumulated
  across steps and nothing syncs with the host.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from medviz_core.engine.kv_cache import BufferCache
from medviz_core.errors import Cancelled
from medviz_core.maps.host_maps import ReducedRows

ATTENTION_NAME = "medviz"

_ACTIVE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("medviz_capture", default=None)
_DIFFERENTIABLE: contextvars.ContextVar[AttentionRecorder | None] = contextvars.ContextVar(
    "medviz_differentiable", default=None
)
_registered = False


def pack_rows(head_rows: torch.Tensor, rollout_row: torch.Tensor | None, context: torch.Tensor,
              extra: list[torch.Tensor]) -> torch.Tensor:
    """One flat float32 tensor of what a step needs: head means, the last layer's heads, the rollout row,
    the layer-mean context row [key] (keys 0..q), then `extra`."""
    parts = [head_rows.mean(1).flatten(), head_rows[-1].flatten()]  # [layer * image], [head * image]
    if rollout_row is not None:
        parts.append(rollout_row.flatten())
    return torch.cat([*parts, context.flatten(), *extra]).float()


def unpack_rows(packed: np.ndarray, layers: int, heads: int, width: int, rollout: bool, keys: int,
                seeing_count: int | None) -> ReducedRows:
    """The inverse of pack_rows on the host; `seeing_count` None reads per-layer flags after the rows."""
    means = packed[: layers * width].reshape(layers, width)
    last = packed[layers * width : (layers + heads) * width].reshape(heads, width)
    rest = packed[(layers + heads) * width :]
    row = rest[:width] if rollout else None
    rest = rest[width:] if rollout else rest
    seeing = seeing_count if seeing_count is not None else int(rest[keys : keys + layers].sum())
    return ReducedRows(layer_means=means, last_heads=last, rollout=row, layers_seeing_image=seeing,
                       context=rest[:keys])


class Capture:
    """Per-run capture state for one sequence (batch 1) on one device.

    Two ways to fill `head_rows` ([layer, head, image]: the query's attention to every image
    token) and fold the rollout, chosen per forward pass by `forward(q_start, q_len)`:
    - batched (a one-token decode step with a `BufferCache`): each layer's attention call only
      keeps a reference to its query row; `finish()` then computes every layer's
      probabilities, image columns and rollout row at once from the cache's shared key
      buffer, in a constant number of operations whatever the number of layers. A compiled
      decode step (engine/compiled.py) hands its query rows to `finish_decode`, which does the same;
    - per layer (the prefill, analyses, a run without a BufferCache): `observe` computes each
      layer's rows inside its attention call and folds its full head-mean matrix.
    """

    def __init__(
        self,
        *,
        layers: int,
        heads: int,
        image_positions: torch.Tensor,  # [N] absolute positions, raster order
        max_length: int,
        rollout: bool,
        device: torch.device,
        cache: Any = None,  # BufferCache: batched decode steps; StaticBufferCache: compiled ones (engine/compiled.py)
        rollout_buffer: torch.Tensor | None = None,  # [layer+1, max_length, image] to reuse (engine/compiled.py)
        cancel: threading.Event | None = None,  # per-layer mode: errors.Cancelled between layers once set
    ) -> None:
        self.cancel = cancel
        self.layers = layers
        self.heads = heads
        self.image_positions = image_positions.to(device=device, dtype=torch.long)
        self.n_image = int(image_positions.numel())
        self.first_image = int(image_positions.min()) if self.n_image else 0
        self._image_set = frozenset(int(p) for p in image_positions.tolist())
        self.device = device
        self.max_length = max_length
        self.cache = cache
        # Per step, filled during (per layer) or after (batched) the forward pass.
        self.head_rows = torch.zeros(layers, heads, self.n_image, device=device)  # [layer, head, image]
        self.seeing = torch.zeros(layers, dtype=torch.bool, device=device)  # [layer], per-layer mode
        self.seeing_count: int | None = None  # batched mode: known on the host, no transfer
        self.context_row = torch.zeros(max_length, device=device)  # [key]: mean_l m[l][j] of the last query
        self.observed = [False] * layers
        self.batched = False
        self._q_start = 0
        self._q_len = 0
        self._queries: list[torch.Tensor | None] = [None] * layers  # batched mode: [heads, head_dim] views
        self._scalings: list[float] = [1.0] * layers
        self._keys_by_offset: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._seeing_by_mask: dict[tuple[int, int, int], torch.Tensor] = {}
        # Rollout state C[l][j] = R[l][j, I]; index 0 is C[-1] (one-hot image rows).
        self.rollout: torch.Tensor | None = None
        if rollout:
            if rollout_buffer is None:
                rollout_buffer = torch.zeros(layers + 1, max_length, self.n_image, device=device)
            else:
                rollout_buffer.zero_()
            self.rollout = rollout_buffer  # [layer+1, position, image]
            self.rollout[0, self.image_positions, torch.arange(self.n_image, device=device)] = 1.0
            # 0.5 * [k <= l]: the rollout recurrence's transfer matrix is this times exp(S_l - S_k).
            self._half_tril = 0.5 * torch.tril(torch.ones(layers, layers, device=device))  # [layer, layer]
            self._half = torch.tensor(0.5, device=device)

    @contextmanager
    def forward(self, q_start: int, q_len: int) -> Iterator[None]:
        """Mark the next forward pass as covering absolute query positions q_start..q_start+q_len-1."""
        self._check_fits(q_start + q_len)
        self._q_start, self._q_len = q_start, q_len
        self.batched = q_len == 1 and isinstance(self.cache, BufferCache) and q_start > 0
        self.observed = [False] * self.layers
        self._queries = [None] * self.layers
        self._keys_by_offset = {}
        self._seeing_by_mask = {}
        if not self.batched:
            self.context_row.zero_()  # the per-layer path adds each layer's row into it
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def finish(self) -> None:
        """After a batched forward: every layer's rows and rollout row at once (no-op after a per-layer one)."""
        if not self.batched:
            return
        missing = [layer for layer, query in enumerate(self._queries) if query is None]
        if missing:
            raise RuntimeError(f"layers {missing} did not run their attention through the capture")
        self._reduce_batched(torch.stack(self._queries), self._q_start)  # type: ignore[arg-type]

    def finish_decode(self, queries: torch.Tensor, scalings: tuple[float, ...], position: int) -> None:
        """A compiled decode step's rows, reduced eagerly (engine/compiled.py on the CPU): what `finish` does after a
        batched forward, from every layer's query row `queries` [layer, head, dim] at `position` and each
        layer's attention scaling."""
        self._check_fits(position + 1)
        if len(scalings) != self.layers:
            raise RuntimeError(f"{len(scalings)} layers' scalings for a capture of {self.layers} layers")
        self._scalings = list(scalings)
        self._reduce_batched(queries, position)

    def _check_fits(self, length: int) -> None:
        if length > self.max_length:
            raise ValueError(f"sequence of {length} tokens exceeds the capture's {self.max_length}")

    def _reduce_batched(self, queries: torch.Tensor, q: int) -> None:
        """Every layer's probability row of query q, its image columns and its rollout row, in a constant
        number of operations (one batched product over the cache's shared key buffer)."""
        assert self.cache is not None
        total = q + 1
        keys = self.cache.buffer.keys_up_to(total)  # [layer, kv_head, key, dim], a view
        layers, heads, dim = queries.shape
        kv_heads = keys.shape[1]
        # Grouped-query attention without copying the keys: head h reads kv head h // group.
        # keys @ queries^T keeps the big operand as it is stored (a transposed key view would be copied first).
        scores = torch.matmul(keys, queries.view(layers, kv_heads, heads // kv_heads, dim).transpose(-1, -2))
        scores = scores.transpose(-1, -2).reshape(layers, heads, total).float() * self._scaling()  # [layer, head, key]
        visible_from = self.cache.visible_from(total)
        if any(visible_from):  # sliding windows: keys before the window have probability 0
            scores = scores.masked_fill(self._before_window(visible_from, total), float("-inf"))
        probs = torch.softmax(scores, dim=-1)  # [layer, head, key]
        self.head_rows = probs[:, :, self.image_positions]  # [layer, head, image]
        self.seeing_count = sum(1 for first in visible_from if first <= self.first_image)
        mean = probs.mean(1)  # m[l][j], [layer, key]
        self.context_row = mean.mean(0)  # [key]
        if self.rollout is not None:
            self._fold_rollout_row(mean, total - 1)

    def _scaling(self) -> float | torch.Tensor:
        if all(value == self._scalings[0] for value in self._scalings):
            return self._scalings[0]
        return torch.tensor(self._scalings, device=self.device).view(-1, 1, 1)

    def _before_window(self, visible_from: list[int], total: int) -> torch.Tensor:
        """[layer, 1, key] True where a key lies before the layer's window."""
        first = torch.tensor(visible_from, device=self.device).view(-1, 1, 1)
        return torch.arange(total, device=self.device).view(1, 1, -1) < first

    def _fold_rollout_row(self, mean: torch.Tensor, q: int) -> None:
        """C[l][q] for every layer from the head-mean rows `mean` [layer, key] of query q, without a loop.

        C[l][q] = 0.5 C[l-1][q] + 0.5 sum_j M[l][q,j] C[l-1][j] splits into the stored rows
        (j < q, one batched product: b[l]) and the new row's own entry: C[l][q] = a_l C[l-1][q]
        + 0.5 b[l] with a_l = 0.5 + 0.5 M[l][q,q], a linear recurrence whose solution is
        C[l][q] = sum_{k<=l} (prod_{k<m<=l} a_m) 0.5 b[k] (+ prod_{m<=l} a_m C[-1][q]).
        """
        assert self.rollout is not None
        below = self.rollout[: self.layers, :q]  # C[l-1][j] for j < q, [layer, key, image]
        stored = torch.bmm(mean[:, None, :q], below)[:, 0]  # b[l], [layer, image]
        growth = torch.add(self._half, mean[:, q], alpha=0.5)  # a_l, [layer]
        logs = torch.cumsum(torch.log(growth), dim=0)  # S_l = sum_{m<=l} log a_m
        transfer = torch.exp(logs[:, None] - logs[None, :]) * self._half_tril  # 0.5 prod_{k<m<=l} a_m, [l, k]
        row = transfer @ stored  # [layer, image]
        if q in self._image_set:  # C[-1][q] is one-hot: never for generated tokens, kept for exactness
            row = row + torch.exp(logs)[:, None] * self.rollout[0, q]
        self.rollout[1:, q] = row

    def observe(
        self,
        layer: int,
        query: torch.Tensor,  # [1, heads, q_len, head_dim]
        key: torch.Tensor,  # [1, kv_heads, kv_len, head_dim]
        mask: torch.Tensor | None,  # [1, 1, q_len, kv_len] bool (True = attend) or additive float
        scaling: float,
        softcap: float | None,
    ) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the analysis was cancelled")
        probs, last_valid = _probabilities(query, key, mask, scaling, softcap)  # [heads, q_len, kv_len], [kv_len]
        q_len, kv_len = probs.shape[1], probs.shape[2]
        total = self._q_start + self._q_len
        if q_len != self._q_len:
            raise RuntimeError(f"layer {layer} saw {q_len} queries, the engine announced {self._q_len}")
        if kv_len > total:  # a static cache hands every position 0..max_length-1; the mask hides the future
            probs, last_valid, kv_len = probs[:, :, :total], last_valid[:total], total
        offset = total - kv_len  # absolute position of key index 0
        index, inside = self._image_keys(offset)
        self.seeing_count = None
        torch.mul(probs[:, -1, index], inside, out=self.head_rows[layer])  # [heads, image]
        self._mark_seeing(layer, offset, mask, index, inside, last_valid)
        self.observed[layer] = True
        mean = probs.mean(0)  # [q_len, kv_len]
        self.context_row[offset:total].add_(mean[-1], alpha=1.0 / self.layers)
        if self.rollout is not None:
            self._fold_rollout(layer, mean, offset, total)

    def _image_keys(self, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Key indices of the image positions for a key offset, and which lie inside the keys.

        Layers of one kind share the offset within a forward pass, so it is computed once per kind.
        """
        found = self._keys_by_offset.get(offset)
        if found is None:
            index = self.image_positions - offset
            found = (index.clamp(min=0), index >= 0)
            self._keys_by_offset[offset] = found
        return found

    def _mark_seeing(self, layer: int, offset: int, mask: torch.Tensor | None, index: torch.Tensor,
                     inside: torch.Tensor, last_valid: torch.Tensor) -> None:
        """Whether the last query sees every image key.

        Layers of one kind share the mask tensor (alive for the whole forward pass) and the
        key offset, so this is computed once per kind.
        """
        key = (offset, 0 if mask is None else mask.data_ptr(), int(last_valid.numel()))
        seeing = self._seeing_by_mask.get(key)
        if seeing is None:
            seeing = (inside & last_valid[index]).all()
            self._seeing_by_mask[key] = seeing
        self.seeing[layer] = seeing

    def _fold_rollout(self, layer: int, mean: torch.Tensor, offset: int, total: int) -> None:
        # mean: [q_len, kv_len] head-mean attention of the new query rows.
        # C[l][q] = 0.5 * C[l-1][q] + 0.5 * sum_j M[l][q, j] * C[l-1][j]
        assert self.rollout is not None
        below = self.rollout[layer]  # C[l-1], [pos, image]
        queries = slice(total - mean.shape[0], total)
        torch.addmm(below[queries], mean, below[offset:total], beta=0.5, alpha=0.5,
                    out=self.rollout[layer + 1, queries])

    def keep(self, layer: int, query: torch.Tensor, scaling: float, softcap: float | None) -> None:
        """Batched mode, inside layer `layer`'s attention: remember its query row (a view) and scaling."""
        if softcap is not None:
            raise NotImplementedError("attention logit softcapping is not captured; Gemma 3 does not use it")
        self._queries[layer] = query[0, :, -1]  # [heads, head_dim]
        self._scalings[layer] = scaling
        self.observed[layer] = True

    def reduced(self, position: int) -> ReducedRows:
        """What the maps need of this step, moved to the CPU in ONE transfer (capture.finish() first)."""
        extra = [self.seeing.float()] if self.seeing_count is None else []
        row = self.rollout_row(position) if self.rollout is not None else None
        context = self.context_row[: position + 1]
        packed = pack_rows(self.head_rows, row, context, extra).cpu().numpy()
        return unpack_rows(packed, self.layers, self.heads, self.n_image, self.rollout is not None, position + 1,
                           self.seeing_count)

    def rollout_row(self, position: int) -> torch.Tensor:
        """R[L-1][position, I] for a position whose rows have been observed."""
        if self.rollout is None:
            raise RuntimeError("rollout was switched off for this run")
        return self.rollout[self.layers, position]

class QueryCollector:
    """Compiled decode steps (engine/compiled.py): each text layer's query row, found on its attention module.

    A compiled graph cannot read a ContextVar, so the decoder sets `_medviz_collector` on the
    attention modules instead; with `collect` False the modules just run SDPA (the plain baseline).
    """

    def __init__(self, layers: int, collect: bool = True) -> None:
        self.collect = collect
        self.queries: list[torch.Tensor | None] = [None] * layers  # [heads, head_dim] views
        self.scalings: list[float] = [1.0] * layers

    def keep(self, layer: int, query: torch.Tensor, scaling: float) -> None:
        self.queries[layer] = query[0, :, -1]
        self.scalings[layer] = scaling


class AttentionRecorder:
    """Differentiable mode: attention computed eagerly (probabilities kept in the autograd graph).

    Used by analyses/gradient.py for gradient relevancy: `probs[l]` is layer l's [heads, T, T]
    attention, part of the graph from the input embeddings to the logits. Raises
    `Cancelled` between layers once `cancel` is set.
    """

    def __init__(self, layers: int, cancel: Any = None) -> None:
        self.layers = layers
        self.cancel = cancel
        self.probs: list[torch.Tensor | None] = [None] * layers

    @contextmanager
    def active(self) -> Iterator[None]:
        token = _DIFFERENTIABLE.set(self)
        try:
            yield
        finally:
            _DIFFERENTIABLE.reset(token)

    def attend(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        scaling: float,
        softcap: float | None,
    ) -> torch.Tensor:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the analysis was cancelled")
        probs, _ = _probabilities(query, key, mask, scaling, softcap)  # [heads, q_len, kv_len]
        self.probs[layer] = probs
        heads, q_len, kv_len = probs.shape
        kv_heads, dim = value.shape[1], value.shape[3]
        grouped = probs.reshape(kv_heads, (heads // kv_heads) * q_len, kv_len)  # head h reads kv head h // group
        output = torch.matmul(grouped, value[0].float()).reshape(heads, q_len, dim).to(query.dtype)
        return output.transpose(0, 1).unsqueeze(0)  # [1, q_len, heads, dim], as attention functions return


def _probabilities(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float,
    softcap: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling [+ softcap] + mask) in float32, as eager attention computes it.

    Also returns which keys the last query may attend to (the mask's last row).
    """
    heads, q_len, dim = query.shape[1], query.shape[2], query.shape[3]
    kv_heads, kv_len = key.shape[1], key.shape[2]
    # Grouped-query attention without copying the keys: head h reads kv head h // group.
    grouped = query[0].float().reshape(kv_heads, (heads // kv_heads) * q_len, dim)  # [kv_heads, group*q, dim]
    scores = torch.matmul(grouped, key[0].float().transpose(1, 2)) * scaling  # [kv_heads, group*q, kv_len]
    scores = scores.reshape(heads, q_len, kv_len)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is None:
        return torch.softmax(scores, dim=-1), torch.ones(scores.shape[2], dtype=torch.bool, device=scores.device)
    mask2d = mask[0, 0, -scores.shape[1] :, -scores.shape[2] :]
    if mask2d.dtype == torch.bool:
        scores = torch.where(mask2d, scores, float("-inf"))
        return torch.softmax(scores, dim=-1), mask2d[-1]
    scores = scores + mask2d.float()
    return torch.softmax(scores, dim=-1), mask2d[-1] > torch.finfo(mask2d.dtype).min / 2


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    softcap = kwargs.pop("softcap", None)
    collector = getattr(module, "_medviz_collector", None)
    if collector is not None:  # a compiled decode step: no ContextVar, no per-layer work
        if collector.collect:
            collector.keep(module.layer_idx, query, kwargs.get("scaling") or float(query.shape[-1]) ** -0.5)
        output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        return output, None
    capture = _ACTIVE.get()
    layer = getattr(module, "layer_idx", None)
    recorder = _DIFFERENTIABLE.get()
    if recorder is not None and layer is not None and layer < recorder.layers:
        scaling = kwargs.get("scaling") or float(query.shape[-1]) ** -0.5
        return recorder.attend(layer, query, key, value, attention_mask, scaling, softcap), None
    if capture is not None and layer is not None and layer < capture.layers:
        scaling = kwargs.get("scaling") or float(query.shape[-1]) ** -0.5
        if capture.batched:
            capture.keep(layer, query, scaling, softcap)
        else:
            capture.observe(layer, query, key, attention_mask, scaling, softcap)
    if softcap is not None:
        raise NotImplementedError("attention logit softcapping needs eager attention; Gemma 3 does not use it")
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return output, None


def _mask(*args: Any, **kwargs: Any) -> Any:
    from transformers.masking_utils import sdpa_mask

    capture = _ACTIVE.get()
    if capture is None or not capture.batched:
        # Per-layer capture reads the mask: always materialise it, so it sees exactly what the model used.
        kwargs["allow_is_causal_skip"] = False
        kwargs["allow_is_bidirectional_skip"] = False
    # A batched decode step builds the mask exactly as plain SDPA does (skipped when nothing is masked):
    # the capture knows the visible keys from the cache (every cached key up to the window).
    return sdpa_mask(*args, **kwargs)


def register() -> str:
    """Register the `medviz` attention and mask functions once; return the implementation name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(ATTENTION_NAME, _attention)
        AttentionMaskInterface.register(ATTENTION_NAME, _mask)
        _registered = True
    return ATTENTION_NAME


def attach(model: Any) -> None:
    """Route the text decoder's attention through `medviz`; the vision tower keeps SDPA."""
    name = register()
    try:
        model.set_attn_implementation({"text_config": name, "vision_config": "sdpa"})
    except (TypeError, ValueError, KeyError):
        model.set_attn_implementation(name)
    text_config: Any = model.config.get_text_config()
    if getattr(text_config, "_attn_implementation", None) != name:
        model.set_attn_implementation(name)

