"""The relevancy methods of docs/relevancy.md, finished on the host from one query's reduced attention rows.

Owns: the formulas (raw, layer_weighted, head_importance, flow, rollout read-out,
consensus) and image_mass, in numpy. The heavy part (every layer's probabilities, the
image columns, the rollout fold) runs on the model's device in engine/capture.py, batched over
layers; one transfer per step brings the head-mean rows [layers, N], the last layer's
head rows [heads, N] and the rollout row [N] here, and the maps are a few vector
operations on those. Does not own: capturing attention (engine/capture.py) or statistics on the
maps (maps/regions.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medviz_core.maps.regions import minmax
from medviz_core.types import CONSENSUS_INPUTS

ENTROPY_EPS = 1e-10


def layer_weights(layers: int) -> npt.NDArray[np.float64]:
    """Method 2's per-layer weights [layers]: (l + 1) / L, divided by L (the mean over layers)."""
    return (np.arange(layers, dtype=np.float64) + 1.0) / layers / layers


def flow_weights(layers: int) -> npt.NDArray[np.float64]:
    """Method 4's per-layer weights [layers], as the original's code normalises them.

    The last layer keeps 0.5; layer L-2-i gets 0.5 * 0.5^i / S with S = sum_{i=0}^{L-2} 0.5^i,
    so the weights sum to 1. With one layer, flow is raw (weight 1).
    """
    if layers == 1:
        return np.ones(1)
    below = 0.5 ** np.arange(layers - 1, dtype=np.float64)  # i = 0..L-2 -> layer L-2-i
    return np.concatenate([(0.5 * below / below.sum())[::-1], [0.5]])


def head_importance(last_layer: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Method 3 on the last layer's per-head image rows [heads, N]; returns [N].

    imp_h = max(a_h) / (1 + H(a_h / sum a_h)); the top ceil(H/2) heads by importance (ties:
    the lower head index) are averaged with weights imp_h / sum of the kept importances.
    A head with no attention on the image (image outside its window) gets importance 0.
    If no kept head has any, the map is all zeros.
    """
    rows = np.asarray(last_layer, dtype=np.float64)
    heads = rows.shape[0]
    totals = rows.sum(-1, keepdims=True)  # [heads, 1]
    p = np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)
    entropy = -(p * np.log(p + ENTROPY_EPS)).sum(-1)  # [heads]
    importance = np.where(totals[:, 0] > 0, rows.max(-1) / (1.0 + entropy), 0.0)  # [heads]
    kept = np.argsort(-importance, kind="stable")[: (heads + 1) // 2]  # stable: ties keep the lower head first
    weights = np.zeros(heads)
    total_kept = importance[kept].sum()
    if total_kept > 0:
        weights[kept] = importance[kept] / total_kept
    return weights @ rows


def compute_maps(
    layer_means: npt.ArrayLike,  # [layers, N]: m[l][I], the head-mean attention of the query to each image token
    last_heads: npt.ArrayLike,  # [heads, N]: A[L-1][h][I]
    rollout_row: npt.ArrayLike | None,  # [N]: R[L-1][q, I], or None when rollout is off
    methods: tuple[str, ...],
) -> tuple[dict[str, npt.NDArray[np.float32]], float]:
    """Return (method -> map [N] float32 for each of `methods`, image_mass) on the host.

    The model's device reduces everything that grows with the context and the layers to
    these rows (engine/capture.py); what is left is O(layers x N) arithmetic on one image block.
    """
    means = np.asarray(layer_means, dtype=np.float64)
    layers = means.shape[0]
    available: dict[str, npt.NDArray[np.float64]] = {
        "raw": means[-1],
        "layer_weighted": layer_weights(layers) @ means,
        "flow": flow_weights(layers) @ means,
    }
    if "head_importance" in methods or "consensus" in methods:
        available["head_importance"] = head_importance(last_heads)
    if rollout_row is not None:
        available["rollout"] = np.asarray(rollout_row, dtype=np.float64)
    if "consensus" in methods:
        parts = [minmax(available[name], np.float64) for name in CONSENSUS_INPUTS if name in available]
        available["consensus"] = np.mean(parts, axis=0)
    maps = {name: available[name].astype(np.float32) for name in methods}
    return maps, float(means.sum(-1).mean())
