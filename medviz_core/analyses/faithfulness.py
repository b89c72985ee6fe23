"""Deletion and insertion curves (Petsiuk et al. 2018) for one token's relevancy map.

Owns: the order in which grid cells are removed or inserted, masking cells with a
baseline image, the curves and their areas, the random-order baseline, and a cancellable
batch over a recording's (token, method) pairs. Model-agnostic: it only calls a `Scorer`
(image -> probability of the explained token). Does not own the scorer itself
(analysis.token_scorer re-runs the model), nor storing or showing the results.

Geometry (docs/analysis.md): a (gh, gw) grid covers the whole image of shape (H, W, 3);
cell (r, c) is pixel rows [r*H//gh, (r+1)*H//gh) and columns [c*W//gw, (c+1)*W//gw), the
cells analyses/agreement.py scores. Cell indices are raster order, r * gw + c.
Cost: a curve calls the scorer steps + 1 times; a full report (deletion, insertion and
both random baselines over `seeds` orders) calls it (steps + 1) * (2 + 2 * seeds) times.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from medviz_core.errors import Cancelled, RequestError
from medviz_core.types import FloatMap

Image = npt.NDArray[np.uint8]  # (H, W, 3) RGB
Scorer = Callable[[Image], float]
"""image -> probability of the explained token (analysis.token_scorer builds one from the model)."""
CurveKind = Literal["deletion", "insertion"]
Order = Literal["relevancy", "random"]
BaselineKind = Literal["blur", "mean"]
Baseline = BaselineKind | Image

BLUR_SIGMA_FRACTION = 1 / 16
"""The "blur" baseline's Gaussian sigma as a share of max(H, W): one cell of the 16 x 16 grid."""


@dataclass(frozen=True)
class Curve:
    """Token probability against the share of cells removed (deletion) or inserted (insertion)."""

    fractions: tuple[float, ...]  # 0.0 .. 1.0, steps + 1 values
    scores: tuple[float, ...]
    auc: float  # trapezoid rule over `fractions`
    kind: CurveKind
    order: Order


@dataclass(frozen=True)
class FaithfulnessResult:
    """The four curves of one token and one method. Faithful maps: deletion.auc low, insertion.auc high."""

    token: int
    method: str
    deletion: Curve
    insertion: Curve
    random_deletion: Curve
    random_insertion: Curve


# ---------------------------------------------------------------- cells


def patch_order(relevancy: FloatMap, rng: np.random.Generator | None = None) -> npt.NDArray[np.intp]:
    """Cell indices (raster order r * gw + c), most relevant first; ties keep raster order.

    With `rng`, a random permutation drawn from it instead (the baseline order).
    """
    _check_map(relevancy)
    if rng is not None:
        return rng.permutation(relevancy.size).astype(np.intp)
    return np.argsort(-relevancy.ravel(), kind="stable").astype(np.intp)


def baseline_image(image: Image, kind: BaselineKind) -> Image:
    """The image cells are replaced by: "blur" = Gaussian blur with sigma max(H, W) / 16
    (cv2, kernel size from sigma, reflected borders); "mean" = every pixel the per-channel
    mean of the image, rounded."""
    _check_image(image)
    if kind == "blur":
        sigma = max(image.shape[:2]) * BLUR_SIGMA_FRACTION
        return np.asarray(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma), dtype=np.uint8)
    if kind == "mean":
        mean = np.rint(image.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
        return np.broadcast_to(mean, image.shape).copy()
    raise RequestError(f"baseline must be 'blur' or 'mean'; got {kind!r}")


def mask_cells(image: Image, cells: Sequence[int] | npt.NDArray[np.intp], grid: tuple[int, int],
               baseline: Baseline) -> Image:
    """A copy of `image` whose given cells hold the baseline's pixels ("blur", "mean" or an image)."""
    _check_image(image)
    source = baseline_image(image, baseline) if isinstance(baseline, str) else baseline
    if source.shape != image.shape:
        raise RequestError(f"baseline image must have the image's shape {image.shape}; got {source.shape}")
    out = image.copy()
    _paste(out, source, cells, grid)
    return out


def _paste(target: Image, source: Image, cells: Iterable[int], grid: tuple[int, int]) -> None:
    """Copy the given cells' pixel rectangles from source into target, in place."""
    gh, gw = grid
    height, width = target.shape[:2]
    if not (1 <= gh <= height and 1 <= gw <= width):
        raise RequestError(f"grid must be between 1x1 and the image size {height}x{width}; got {gh}x{gw}")
    for cell in cells:
        if not 0 <= cell < gh * gw:
            raise RequestError(f"cell index must be in 0..{gh * gw - 1}; got {cell}")
        r, c = divmod(int(cell), gw)
        rows = slice(r * height // gh, (r + 1) * height // gh)
        cols = slice(c * width // gw, (c + 1) * width // gw)
        target[rows, cols] = source[rows, cols]


# ---------------------------------------------------------------- curves


def auc(fractions: Sequence[float], scores: Sequence[float]) -> float:
    """Area under a curve by the trapezoid rule."""
    return math.fsum((f1 - f0) * (s0 + s1) / 2 for f0, f1, s0, s1 in zip(fractions, fractions[1:], scores, scores[1:]))


def deletion_curve(image: Image, relevancy: FloatMap, scorer: Scorer, steps: int = 16,
                   baseline: Baseline = "blur") -> Curve:
    """Remove the most relevant cells first, in `steps` equal increments, scoring after each."""
    return _curve(image, scorer, patch_order(relevancy), relevancy.shape, steps, baseline, "deletion", "relevancy")


def insertion_curve(image: Image, relevancy: FloatMap, scorer: Scorer, steps: int = 16,
                    baseline: Baseline = "blur") -> Curve:
    """Start from the fully baselined image and put back the most relevant cells first."""
    return _curve(image, scorer, patch_order(relevancy), relevancy.shape, steps, baseline, "insertion", "relevancy")


def random_baseline(image: Image, scorer: Scorer, steps: int = 16, seeds: int = 3,
                    kind: CurveKind = "deletion", grid: tuple[int, int] = (16, 16),
                    baseline: Baseline = "blur") -> Curve:
    """The mean curve over `seeds` random orders (np.random.default_rng(0 .. seeds-1))."""
    return _random(image, scorer, steps, seeds, kind, grid, baseline, None)


def _random(image: Image, scorer: Scorer, steps: int, seeds: int, kind: CurveKind, grid: tuple[int, ...],
            baseline: Baseline, cancel: threading.Event | None) -> Curve:
    if seeds < 1:
        raise RequestError(f"seeds must be at least 1; got {seeds}")
    cells = grid[0] * grid[1]
    curves = [
        _curve(image, scorer, np.random.default_rng(seed).permutation(cells), grid, steps, baseline, kind, "random",
               cancel)
        for seed in range(seeds)
    ]
    scores = tuple(math.fsum(c.scores[i] for c in curves) / seeds for i in range(steps + 1))
    fractions = curves[0].fractions
    return Curve(fractions, scores, auc(fractions, scores), kind, "random")


def _curve(image: Image, scorer: Scorer, order: npt.NDArray[np.intp], grid: tuple[int, ...], steps: int,
           baseline: Baseline, kind: CurveKind, order_name: Order, cancel: threading.Event | None = None) -> Curve:
    """Score the image as cells move from `image` to the baseline (deletion) or back (insertion).

    After step k, the first (k * N) // steps cells of `order` have moved; the fraction axis
    holds that count / N, so it equals k / steps whenever steps divides N.
    """
    gh, gw = int(grid[0]), int(grid[1])
    count = gh * gw
    if not 1 <= steps <= count:
        raise RequestError(f"steps must be in 1..{count} (the number of cells); got {steps}")
    _check_image(image)
    moved = baseline_image(image, baseline) if isinstance(baseline, str) else baseline
    if moved.shape != image.shape:
        raise RequestError(f"baseline image must have the image's shape {image.shape}; got {moved.shape}")
    current, source = (image.copy(), moved) if kind == "deletion" else (moved.copy(), image)
    fractions, scores, done = [], [], 0
    for k in range(steps + 1):
        upto = (k * count) // steps
        _paste(current, source, order[done:upto], (gh, gw))
        done = upto
        if cancel is not None and cancel.is_set():
            raise Cancelled("the faithfulness curves were cancelled")
        fractions.append(upto / count)
        scores.append(_score(scorer, current))
    return Curve(tuple(fractions), tuple(scores), auc(fractions, scores), kind, order_name)


def _score(scorer: Scorer, image: Image) -> float:
    value = scorer(image.copy())  # a copy: a scorer that writes into its input cannot bend the curve
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise RequestError(f"a scorer must return a finite probability; got {value!r}")
    return number


# ---------------------------------------------------------------- reports


def faithfulness_report(image: Image, relevancy: FloatMap, scorer: Scorer, token: int = 0, method: str = "",
                        steps: int = 16, baseline: Baseline = "blur", seeds: int = 3,
                        cancel: threading.Event | None = None) -> FaithfulnessResult:
    """Deletion, insertion and both random baselines for one token and one method; errors.Cancelled once
    `cancel` is set (checked between two scorer calls)."""
    return _report(image, relevancy, scorer, token, method, steps, baseline, seeds, cancel, {})


def batch(image: Image, items: Iterable[tuple[int, str, FloatMap]], scorer_for: Callable[[int], Scorer],
          steps: int = 16, baseline: Baseline = "blur", seeds: int = 3,
          cancel: threading.Event | None = None) -> Iterator[FaithfulnessResult]:
    """One result per (token, method, map), in order; errors.Cancelled once `cancel` is set.

    `scorer_for(token)` is called once per token. The random baselines depend on the token
    only (and the grid), so they are computed once per token and shared by its methods.
    """
    if isinstance(baseline, str):
        baseline = baseline_image(image, baseline)  # one blur for the whole batch
    scorers: dict[int, Scorer] = {}
    randoms: dict[tuple[int, ...], tuple[Curve, Curve]] = {}
    for token, method, relevancy in items:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the faithfulness curves were cancelled")
        if token not in scorers:
            scorers[token] = scorer_for(token)
        yield _report(image, relevancy, scorers[token], token, method, steps, baseline, seeds, cancel, randoms)


def _report(image: Image, relevancy: FloatMap, scorer: Scorer, token: int, method: str, steps: int,
            baseline: Baseline, seeds: int, cancel: threading.Event | None,
            randoms: dict[tuple[int, ...], tuple[Curve, Curve]]) -> FaithfulnessResult:
    order, grid = patch_order(relevancy), relevancy.shape
    if isinstance(baseline, str):
        baseline = baseline_image(image, baseline)  # once for the 2 + 2 * seeds curves
    deletion = _curve(image, scorer, order, grid, steps, baseline, "deletion", "relevancy", cancel)
    insertion = _curve(image, scorer, order, grid, steps, baseline, "insertion", "relevancy", cancel)
    key = (token, *grid)
    if key not in randoms:
        randoms[key] = (
            _random(image, scorer, steps, seeds, "deletion", grid, baseline, cancel),
            _random(image, scorer, steps, seeds, "insertion", grid, baseline, cancel),
        )
    return FaithfulnessResult(token, method, deletion, insertion, *randoms[key])


def _check_image(image: Image) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise RequestError(f"an image must be an (H, W, 3) uint8 array; got {image.dtype} {image.shape}")


def _check_map(relevancy: FloatMap) -> None:
    if relevancy.ndim != 2 or relevancy.size == 0:
        raise RequestError(f"a relevancy map must be a non-empty (grid_h, grid_w) array; got shape {relevancy.shape}")
    if not np.all(np.isfinite(relevancy)):
        raise RequestError("a relevancy map must hold finite values; got NaN or infinity")
