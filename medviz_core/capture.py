"""Attention capture through transformers' AttentionInterface: the model runs SDPA, we read rows.

Owns: the `medviz` attention and mask functions registered with transformers, and
`Capture`, the per-run state that they fill: for the current query position, every text
layer's per-head attention to the image tokens, and the incremental rollout state
(RELEVANCY.md, method 5). Does not own: turning those into maps (relevancy.py) or the
generation loop (engine.py).

How it stays cheap and exact:
- SDPA (the model's own kernel) computes the attention output; greedy tokens are the
  model's. We recompute softmax(q k^T * scaling + mask) in float32 only for what the
  methods need: the last query row in every layer (every step), and the full head-mean
  matrix once at prefill, folded straight into the rollout state (never stored).
- The mask function always materialises the boolean mask (no "is_causal" shortcut), so
  the probabilities we compute see exactly the mask the model used: Gemma 3's
  bidirectional image block at prefill and its sliding windows.
- Keys come from the cache, so in sliding layers the key index j is absolute position
  `j + total - kv_len` (MEDGEMMA.md). Image keys outside that range have probability 0.
- Everything stays on the model's device in preallocated tensors; nothing is accumulated
  across steps and nothing syncs with the host.
"""

from __future__ import annotations

import contextvars
from typing import Any, Iterator
from contextlib import contextmanager

import torch

ATTENTION_NAME = "medviz"

_ACTIVE: contextvars.ContextVar["Capture | None"] = contextvars.ContextVar("medviz_capture", default=None)
_DIFFERENTIABLE: contextvars.ContextVar["AttentionRecorder | None"] = contextvars.ContextVar(
    "medviz_differentiable", default=None
)
_registered = False


class Capture:
    """Per-run capture state for one sequence (batch 1) on one device."""

    def __init__(
        self,
        *,
        layers: int,
        heads: int,
        image_positions: torch.Tensor,  # [N] absolute positions, raster order
        max_length: int,
        rollout: bool,
        device: torch.device,
    ) -> None:
        self.layers = layers
        self.heads = heads
        self.image_positions = image_positions.to(device=device, dtype=torch.long)
        self.n_image = int(image_positions.numel())
        self.device = device
        self.max_length = max_length
        # Per step, filled layer by layer during the forward pass.
        self.head_rows = torch.zeros(layers, heads, self.n_image, device=device)  # [layer, head, image]
        self.seeing = torch.zeros(layers, dtype=torch.bool, device=device)  # [layer]
        self.observed = [False] * layers
        self._q_start = 0
        self._q_len = 0
        self._keys_by_offset: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._seeing_by_mask: dict[tuple[int, int, int], torch.Tensor] = {}
        # Rollout state C[l][j] = R[l][j, I]; index 0 is C[-1] (one-hot image rows).
        self.rollout: torch.Tensor | None = None
        if rollout:
            self.rollout = torch.zeros(layers + 1, max_length, self.n_image, device=device)  # [layer+1, pos, image]
            self.rollout[0, self.image_positions, torch.arange(self.n_image, device=device)] = 1.0

    @contextmanager
    def forward(self, q_start: int, q_len: int) -> Iterator[None]:
        """Mark the next forward pass as covering absolute query positions q_start..q_start+q_len-1."""
        if q_start + q_len > self.max_length:
            raise ValueError(f"sequence of {q_start + q_len} tokens exceeds the capture's {self.max_length}")
        self._q_start, self._q_len = q_start, q_len
        self.observed = [False] * self.layers
        self._keys_by_offset = {}
        self._seeing_by_mask = {}
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def rollout_row(self, position: int) -> torch.Tensor:
        """R[L-1][position, I] for a position whose rows have been observed."""
        if self.rollout is None:
            raise RuntimeError("rollout was switched off for this run")
        return self.rollout[self.layers, position]

    def observe(
        self,
        layer: int,
        query: torch.Tensor,  # [1, heads, q_len, head_dim]
        key: torch.Tensor,  # [1, kv_heads, kv_len, head_dim]
        mask: torch.Tensor | None,  # [1, 1, q_len, kv_len] bool (True = attend) or additive float
        scaling: float,
        softcap: float | None,
    ) -> None:
        probs, last_valid = _probabilities(query, key, mask, scaling, softcap)  # [heads, q_len, kv_len], [kv_len]
        q_len, kv_len = probs.shape[1], probs.shape[2]
        total = self._q_start + self._q_len
        if q_len != self._q_len:
            raise RuntimeError(f"layer {layer} saw {q_len} queries, the engine announced {self._q_len}")
        offset = total - kv_len  # absolute position of key index 0
        index, inside = self._image_keys(offset)
        torch.mul(probs[:, -1, index], inside, out=self.head_rows[layer])  # [heads, image]
        self._mark_seeing(layer, offset, mask, index, inside, last_valid)
        self.observed[layer] = True
        if self.rollout is not None:
            self._fold_rollout(layer, probs.mean(0), offset, total)

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
        torch.addmm(below[queries], mean, below[offset:total], beta=0.5, alpha=0.5, out=self.rollout[layer + 1, queries])


class AttentionRecorder:
    """Differentiable mode: attention computed eagerly (probabilities kept in the autograd graph).

    Used by analysis.py for gradient relevancy: `probs[l]` is layer l's [heads, T, T]
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
            raise Cancelled("cancelled")
        probs, _ = _probabilities(query, key, mask, scaling, softcap)  # [heads, q_len, kv_len]
        self.probs[layer] = probs
        heads, q_len, kv_len = probs.shape
        kv_heads, dim = value.shape[1], value.shape[3]
        grouped = probs.reshape(kv_heads, (heads // kv_heads) * q_len, kv_len)  # head h reads kv head h // group
        output = torch.matmul(grouped, value[0].float()).reshape(heads, q_len, dim).to(query.dtype)
        return output.transpose(0, 1).unsqueeze(0)  # [1, q_len, heads, dim], as attention functions return


class Cancelled(Exception):
    """Raised inside a forward pass when an analysis job is cancelled."""


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
    capture = _ACTIVE.get()
    layer = getattr(module, "layer_idx", None)
    recorder = _DIFFERENTIABLE.get()
    if recorder is not None and layer is not None and layer < recorder.layers:
        scaling = kwargs.get("scaling") or float(query.shape[-1]) ** -0.5
        return recorder.attend(layer, query, key, value, attention_mask, scaling, softcap), None
    if capture is not None and layer is not None and layer < capture.layers:
        scaling = kwargs.get("scaling") or float(query.shape[-1]) ** -0.5
        capture.observe(layer, query, key, attention_mask, scaling, softcap)
    if softcap is not None:
        raise NotImplementedError("attention logit softcapping needs eager attention; Gemma 3 does not use it")
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return output, None


def _mask(*args: Any, **kwargs: Any) -> Any:
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
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

