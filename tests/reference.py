"""An independent, deliberately plain implementation of RELEVANCY.md for the exactness tests.

It runs ONE eager forward pass with `output_attentions=True` over a finished sequence and
applies each formula with explicit loops in float64 numpy: no capture, no incremental
state, no shared code with the engine beyond the model itself.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch


def full_attentions(engine: Any, inputs: Any, generated: list[int]) -> list[np.ndarray]:
    """Per layer [heads, T, T] attention probabilities of the prompt + generated tokens."""
    model = copy.deepcopy(engine.model)
    model.set_attn_implementation("eager")
    ids = torch.cat([inputs["input_ids"], torch.tensor([generated], device=inputs["input_ids"].device)], dim=1)
    token_types = torch.cat(
        [inputs["token_type_ids"], torch.zeros((1, len(generated)), dtype=torch.long, device=ids.device)], dim=1
    )
    with torch.no_grad():
        out = model(
            input_ids=ids,
            pixel_values=inputs["pixel_values"],
            attention_mask=torch.ones_like(ids),
            token_type_ids=token_types,
            output_attentions=True,
            use_cache=False,
        )
    return [a[0].double().cpu().numpy() for a in out.attentions]


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def maps_for_query(attn: list[np.ndarray], q: int, image: list[int], grid: tuple[int, int]) -> dict[str, np.ndarray]:
    L = len(attn)
    H = attn[0].shape[0]
    m = [attn[l][:, q, : q + 1].mean(0) for l in range(L)]
    img = [m[l][image] for l in range(L)]
    raw = img[L - 1]
    layer_weighted = sum(((l + 1) / L) * img[l] for l in range(L)) / L
    rows = [attn[L - 1][h, q, image] for h in range(H)]
    importances = []
    for row in rows:
        total = row.sum()
        p = row / total if total > 0 else np.zeros_like(row)
        entropy = -sum(pi * math.log(pi + 1e-10) for pi in p)
        importances.append(p.max() / (1 + entropy))
    weight_sum = sum(importances)
    if weight_sum > 0:
        head_importance = sum((imp / weight_sum) * row for imp, row in zip(importances, rows))
    else:  # the image is outside every head's window in the last layer (docs/methods.md)
        head_importance = np.zeros(len(image))
    flow = 0.5 * img[L - 1] + sum(0.5 ** (i + 1) * img[L - 2 - i] for i in range(L - 1))
    rollout = rollout_map(attn, q, image)
    consensus = np.mean([minmax(x) for x in (layer_weighted, head_importance, flow, rollout)], axis=0)
    found = {
        "raw": raw,
        "layer_weighted": layer_weighted,
        "head_importance": head_importance,
        "flow": flow,
        "rollout": rollout,
        "consensus": consensus,
    }
    return {name: value.reshape(grid) for name, value in found.items()}


def rollout_map(attn: list[np.ndarray], q: int, image: list[int]) -> np.ndarray:
    """Abnar & Zuidema rollout over the full matrices up to q: R[L-1][q, I]."""
    size = q + 1
    R = np.eye(size)
    for layer in attn:
        M = layer[:, :size, :size].mean(0)
        R = (0.5 * M + 0.5 * np.eye(size)) @ R
    return R[q, image]


def image_mass(attn: list[np.ndarray], q: int, image: list[int]) -> float:
    return float(np.mean([layer[:, q, : q + 1].mean(0)[image].sum() for layer in attn]))
