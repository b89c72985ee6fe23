"""The relevancy methods of RELEVANCY.md, computed on the model's device from one query's attention.

Owns: the formulas (raw, layer_weighted, head_importance, flow, rollout read-out,
consensus) and image_mass, as batched tensor operations with no Python loop over layers
or heads. Input is what `capture.Capture` holds for the current query; output is one
stacked tensor, so the engine moves everything to the CPU in a single transfer.
Does not own: capturing attention (capture.py) or statistics on the maps (regions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import RequestError
from .types import CONSENSUS_INPUTS, METHODS

ENTROPY_EPS = 1e-10


def check_methods(methods: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Validate a method selection; None means all. Keeps METHODS order, drops duplicates."""
    if methods is None:
        return METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise RequestError(
            f"methods must be a non-empty subset of {', '.join(METHODS)}; got {list(methods)!r}"
        )
    return tuple(m for m in METHODS if m in methods)


@dataclass(frozen=True)
class MapWeights:
    """Per-layer weights of the linear methods, built once per run on the device."""

    layer_weighted: torch.Tensor  # [layers]
    flow: torch.Tensor  # [layers]

    @staticmethod
    def for_layers(layers: int, device: torch.device) -> "MapWeights":
        index = torch.arange(layers, dtype=torch.float32, device=device)
        layer_weighted = (index + 1) / layers / layers
        return MapWeights(layer_weighted=layer_weighted, flow=flow_weights(layers).to(device))


def flow_weights(layers: int) -> torch.Tensor:
    """Method 4's per-layer weights [layers], as the original's code normalises them.

    The last layer keeps 0.5; layer L-2-i gets 0.5 * 0.5^i / S with S = sum_{i=0}^{L-2} 0.5^i,
    so the weights sum to 1. With one layer, flow is raw (weight 1).
    """
    if layers == 1:
        return torch.ones(1)
    below = torch.pow(0.5, torch.arange(layers - 1, dtype=torch.float64))  # i = 0..L-2 -> layer L-2-i
    weights = torch.cat([(0.5 * below / below.sum()).flip(0), torch.tensor([0.5], dtype=torch.float64)])
    return weights.float()


def head_importance(last_layer: torch.Tensor) -> torch.Tensor:
    """Method 3 on the last layer's per-head image rows [heads, N]; returns [N].

    imp_h = max(a_h) / (1 + H(a_h / sum a_h)); the top ceil(H/2) heads by importance (ties:
    the lower head index) are averaged with weights imp_h / sum of the kept importances.
    A head with no attention on the image (image outside its window) gets importance 0.
    If no kept head has any, the map is all zeros.
    """
    heads = last_layer.shape[0]
    totals = last_layer.sum(-1, keepdim=True)  # [heads, 1]
    p = torch.where(totals > 0, last_layer / totals.clamp(min=1e-30), torch.zeros_like(last_layer))
    entropy = -(p * torch.log(p + ENTROPY_EPS)).sum(-1)  # [heads]
    importance = torch.where(totals[:, 0] > 0, last_layer.amax(-1) / (1.0 + entropy), torch.zeros_like(entropy))
    order = torch.sort(importance, descending=True, stable=True).indices  # stable: ties keep the lower head first
    kept = torch.zeros_like(importance).index_fill_(0, order[: (heads + 1) // 2], 1.0) * importance  # [heads]
    total_kept = kept.sum()
    weights = torch.where(total_kept > 0, kept / total_kept.clamp(min=1e-30), torch.zeros_like(kept))
    return (weights[:, None] * last_layer).sum(0)


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Scale to 0..1; a constant map becomes zeros."""
    low, high = values.min(), values.max()
    span = high - low
    return torch.where(span > 0, (values - low) / span.clamp(min=1e-30), torch.zeros_like(values))


def compute_maps(
    head_rows: torch.Tensor,  # [layers, heads, N]: attention of the query to each image token
    rollout_row: torch.Tensor | None,  # [N]: R[L-1][q, I], or None when rollout is off
    weights: MapWeights,
    methods: tuple[str, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (maps [len(methods), N] in `methods` order, image_mass scalar), all on the device."""
    layer_means = head_rows.mean(1)  # m[l][I], [layers, N]
    available: dict[str, torch.Tensor] = {
        "raw": layer_means[-1],
        "layer_weighted": weights.layer_weighted @ layer_means,
        "flow": weights.flow @ layer_means,
    }
    if "head_importance" in methods or "consensus" in methods:
        available["head_importance"] = head_importance(head_rows[-1])
    if rollout_row is not None:
        available["rollout"] = rollout_row
    if "consensus" in methods:
        parts = [minmax(available[name]) for name in CONSENSUS_INPUTS if name in available]
        available["consensus"] = torch.stack(parts).mean(0)
    maps = torch.stack([available[name] for name in methods])
    image_mass = layer_means.sum(-1).mean()
    return maps, image_mass
