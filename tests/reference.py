"""An independent, deliberately plain implementation of docs/relevancy.md for the exactness tests.

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
    # Eager attention (which returns probabilities) in the text decoder; the vision tower keeps SDPA, as in stream().
    model.set_attn_implementation({"text_config": "eager", "vision_config": "sdpa"})
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
            logits_to_keep=1,  # only the attentions are read; every position's logits cost a vocab-wide matmul each
        )
    return [a[0].double().cpu().numpy() for a in out.attentions]


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def head_importances(attn: list[np.ndarray], q: int, image: list[int]) -> list[float]:
    """imp_h of the last layer's heads: max(a_h) / (1 + entropy of a_h / sum(a_h)); 0 without image attention."""
    importances = []
    for row in (head[q, image] for head in attn[-1]):
        total = row.sum()
        if total > 0:
            p = row / total
            entropy = -sum(pi * math.log(pi + 1e-10) for pi in p)
            importances.append(float(row.max() / (1 + entropy)))
        else:  # the image is outside this head's window (docs/methods.md)
            importances.append(0.0)
    return importances


def kept_heads(importances: list[float]) -> list[int]:
    """The top ceil(H/2) heads by importance, ties broken by the lower head index."""
    keep = math.ceil(len(importances) / 2)
    return sorted(range(len(importances)), key=lambda h: (-importances[h], h))[:keep]


def maps_for_query(
    attn: list[np.ndarray], q: int, image: list[int], grid: tuple[int, int], kept: list[int] | None = None
) -> dict[str, np.ndarray]:
    """Every method for query q; `kept` overrides head_importance's head selection (bf16 near-ties)."""
    L = len(attn)
    m = [attn[layer][:, q, : q + 1].mean(0) for layer in range(L)]
    img = [m[layer][image] for layer in range(L)]
    raw = img[L - 1]
    layer_weighted = sum(((layer + 1) / L) * img[layer] for layer in range(L)) / L
    importances = head_importances(attn, q, image)
    kept = kept_heads(importances) if kept is None else kept
    weight_sum = sum(importances[h] for h in kept)
    if weight_sum > 0:
        head_importance = sum((importances[h] / weight_sum) * attn[L - 1][h, q, image] for h in kept)
    else:
        head_importance = np.zeros(len(image))
    if L == 1:
        flow = img[0]
    else:
        S = sum(0.5**i for i in range(L - 1))
        flow = 0.5 * img[L - 1] + 0.5 * sum((0.5**i / S) * img[L - 2 - i] for i in range(L - 1))
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


def context(attn: list[np.ndarray], q: int, not_text: set[int], k: int = 8) -> tuple[list[tuple[int, float]], float]:
    """The k non-image, non-<bos> keys j <= q with the largest mean_l m[l][j] (ties: lower j), and m's <bos> share."""
    row = np.mean([layer[:, q, : q + 1].mean(0) for layer in attn], axis=0)
    ranked = sorted((j for j in range(q + 1) if j not in not_text and j != 0), key=lambda j: (-row[j], j))
    return [(j, float(row[j])) for j in ranked[:k]], float(row[0])
