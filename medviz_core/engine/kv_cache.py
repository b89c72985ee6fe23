"""A transformers KV cache whose layers share one preallocated buffer, so every layer's keys are one tensor.

Owns: `BufferCache`, a `DynamicCache` whose layers behave exactly like transformers'
`DynamicLayer` (full attention) and `DynamicSlidingWindowLayer` (sliding attention): same
keys and values handed to attention, same mask sizes, same sequence lengths; but every
layer writes into one `[layers, kv_heads, max_length, head_dim]` tensor instead of its own
growing one. After a decode forward the capture reads every layer's keys from that tensor
at once (`keys_up_to`), with no copy and no work inside the layers. Absolute positions
are kept for every layer (sliding layers are handed the window, a view), so the buffer
costs the memory of a full-attention cache of `max_length` tokens. Does not own the
attention capture (engine/capture.py) or the generation loop (engine/run.py).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer, StaticLayer


class SharedBuffer:
    """Keys and values of every layer for one sequence: [layers, kv_heads, max_length, head_dim] each."""

    def __init__(self, layers: int, max_length: int) -> None:
        self.layers = layers
        self.max_length = max_length
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def write(self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor) -> int:
        """Store one layer's new keys/values [1, kv_heads, n, head_dim] at start..start+n-1; return the end."""
        end = start + keys.shape[-2]
        if end > self.max_length:
            raise ValueError(f"sequence of {end} tokens exceeds the cache's {self.max_length}")
        if self.keys is None or self.values is None:
            shape = (self.layers, keys.shape[1], self.max_length, keys.shape[3])
            self.keys = torch.zeros(shape, dtype=keys.dtype, device=keys.device)  # [layer, kv_head, position, dim]
            self.values = torch.zeros(shape, dtype=values.dtype, device=values.device)
        self.keys[layer, :, start:end].copy_(keys[0])
        self.values[layer, :, start:end].copy_(values[0])
        return end

    def layer_view(self, layer: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s keys and values at positions start..end-1, as [1, kv_heads, end - start, head_dim] views."""
        assert self.keys is not None and self.values is not None
        return self.keys[layer : layer + 1, :, start:end], self.values[layer : layer + 1, :, start:end]

    def allocate(self, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        """Allocate both tensors now (the static cache: fixed addresses for compiled graphs)."""
        shape = (self.layers, kv_heads, self.max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # [layer, kv_head, position, dim]
        self.values = torch.zeros(shape, dtype=dtype, device=device)

    def keys_up_to(self, end: int) -> torch.Tensor:
        """Every layer's keys at positions 0..end-1: [layers, kv_heads, end, head_dim], a view."""
        assert self.keys is not None
        return self.keys[:, :, :end]


class BufferLayer(DynamicLayer):
    """A full-attention layer: DynamicLayer's behaviour, its keys in the shared buffer."""

    def __init__(self, buffer: SharedBuffer, index: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # transformers' __init__(**kwargs) is untyped
        self.buffer = buffer
        self.index = index
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def get_seq_length(self) -> int:
        return self.length

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.length = self.buffer.write(self.index, self.length, key_states, value_states)
        self.keys, self.values = self.buffer.layer_view(self.index, 0, self.length)
        return self.keys, self.values


class SlidingBufferLayer(DynamicSlidingWindowLayer):
    """A sliding-window layer: DynamicSlidingWindowLayer's behaviour (it is handed the window), keys in the buffer."""

    def __init__(self, buffer: SharedBuffer, index: int, sliding_window: int) -> None:
        super().__init__(sliding_window=sliding_window)
        self.buffer = buffer
        self.index = index

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._sliding_window_tensor = self._sliding_window_tensor.to(self.device)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        before = self.cumulative_length
        end = self.buffer.write(self.index, before, key_states, value_states)
        self.cumulative_length = end
        # As DynamicSlidingWindowLayer: the last `window - 1` cached tokens plus the new ones ...
        handed = self.buffer.layer_view(self.index, max(before - self.sliding_window + 1, 0), end)
        # ... of which the last `window - 1` stay cached for the next step.
        self.keys, self.values = self.buffer.layer_view(self.index, max(end - self.sliding_window + 1, 0), end)
        return handed


class BufferCache(DynamicCache):
    """A DynamicCache for one sequence (batch 1) of at most `max_length` tokens, every layer in one buffer."""

    def __init__(self, text_config: Any, max_length: int) -> None:
        layer_types = list(getattr(text_config, "layer_types", None) or [])
        layers = int(text_config.num_hidden_layers)
        if not layer_types:
            layer_types = ["full_attention"] * layers
        window = getattr(text_config, "sliding_window", None)
        self.buffer = SharedBuffer(layers, max_length)
        cache_layers: list[Any] = [
            SlidingBufferLayer(self.buffer, i, int(window)) if kind == "sliding_attention" and window else
            BufferLayer(self.buffer, i)
            for i, kind in enumerate(layer_types)
        ]
        self.windows: tuple[int | None, ...] = tuple(
            int(window) if kind == "sliding_attention" and window else None for kind in layer_types
        )
        super(DynamicCache, self).__init__(layers=cache_layers)

    def visible_from(self, total: int) -> list[int]:
        """Per layer, the first position the newest query of a `total`-token sequence sees (sliding windows)."""
        return first_visible(self.windows, total)


class StaticBufferLayer(StaticLayer):
    """transformers' StaticLayer (fixed shapes, in-place writes: for torch.compile) whose tensors are buffer views.

    Every layer, sliding or not, holds absolute positions 0..max_length-1; the masks (built
    by the model at prefill, by engine/compiled.py in compiled decode steps) apply the windows.
    """

    def __init__(self, buffer: SharedBuffer, index: int) -> None:
        super().__init__(max_cache_len=buffer.max_length)
        self.buffer = buffer
        self.index = index

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        assert self.buffer.keys is not None and self.buffer.values is not None, "allocate the buffer first"
        self.device = key_states.device
        self.batch_size, self.num_heads = key_states.shape[:2]
        self.k_head_dim = key_states.shape[-1]
        self.v_head_dim = value_states.shape[-1]
        self.keys = self.buffer.keys[self.index : self.index + 1]  # [1, kv_head, position, dim] views
        self.values = self.buffer.values[self.index : self.index + 1]
        self.cumulative_length = self.cumulative_length.to(self.device)
        self.is_initialized = True


class StaticBufferCache(Cache):
    """A static cache of `max_length` tokens for one sequence, every layer in one preallocated buffer."""

    def __init__(self, text_config: Any, max_length: int, dtype: torch.dtype, device: torch.device) -> None:
        layers = int(text_config.num_hidden_layers)
        self.buffer = SharedBuffer(layers, max_length)
        self.buffer.allocate(int(text_config.num_key_value_heads), int(text_config.head_dim), dtype, device)
        kinds = list(getattr(text_config, "layer_types", None) or ["full_attention"] * layers)
        window = getattr(text_config, "sliding_window", None)
        self.windows: tuple[int | None, ...] = tuple(
            int(window) if kind == "sliding_attention" and window else None for kind in kinds
        )
        self.static_layers = [StaticBufferLayer(self.buffer, i) for i in range(layers)]
        super().__init__(layers=list(self.static_layers))

    def reset(self) -> None:
        """Empty it for a new sequence (the tensors keep their addresses, as compiled graphs need)."""
        for layer in self.static_layers:
            layer.cumulative_length.zero_()

    def visible_from(self, total: int) -> list[int]:
        return first_visible(self.windows, total)


def first_visible(windows: tuple[int | None, ...], total: int) -> list[int]:
    """Per layer, the first position the newest query of a `total`-token sequence sees (sliding windows)."""
    return [0 if window is None else max(total - window, 0) for window in windows]
