"""Deletion and insertion curves on a constructed scorer whose output depends only on known cells."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from medviz_core.analyses.faithfulness import (
    BaselineKind,
    Curve,
    Scorer,
    auc,
    baseline_image,
    batch,
    deletion_curve,
    faithfulness_report,
    insertion_curve,
    mask_cells,
    patch_order,
    random_baseline,
)
from medviz_core.errors import Cancelled, RequestError

GRID = (16, 16)  # on a 64 x 64 image: 4 x 4 pixel cells
KEY_CELLS = ((2, 3), (10, 12))


def key_image() -> np.ndarray:
    """Black, except the two key cells, which are white."""
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    for r, c in KEY_CELLS:
        image[r * 4 : r * 4 + 4, c * 4 : c * 4 + 4] = 255
    return image


def key_scorer(image: np.ndarray) -> float:
    """Mean brightness of the key cells, 0..1: the 'model' looks at nothing else."""
    return float(np.mean([image[r * 4 : r * 4 + 4, c * 4 : c * 4 + 4].mean() for r, c in KEY_CELLS]) / 255)


def key_relevancy() -> np.ndarray:
    relevancy = np.zeros(GRID, dtype=np.float32)
    relevancy[2, 3], relevancy[10, 12] = 2.0, 1.0
    return relevancy


MEAN = 2 / 255  # the "mean" baseline of key_image: rint(2 * 16 * 255 / 4096) = 2


def test_patch_order_puts_the_most_relevant_cells_first_and_keeps_ties_in_raster_order() -> None:
    relevancy = np.array([[1.0, 3.0], [3.0, 0.0]], dtype=np.float32)
    assert patch_order(relevancy).tolist() == [1, 2, 0, 3]


def test_patch_order_with_a_generator_is_its_seeded_permutation() -> None:
    order = patch_order(key_relevancy(), np.random.default_rng(5))
    assert order.tolist() == np.random.default_rng(5).permutation(256).tolist()


def test_mask_cells_changes_exactly_the_pixels_of_the_given_cells() -> None:
    image = np.full((10, 7, 3), 255, dtype=np.uint8)
    out = mask_cells(image, [5], (3, 3), np.zeros_like(image))  # cell (1, 2): rows 3..5, cols 4..6
    expected = image.copy()
    expected[3:6, 4:7] = 0
    assert np.array_equal(out, expected)
    assert image.min() == 255  # the input is untouched


def test_mask_cells_with_the_mean_baseline_fills_the_cells_with_the_image_mean() -> None:
    out = mask_cells(key_image(), [0, 17], GRID, "mean")
    changed = np.argwhere((out != key_image()).any(axis=2))
    assert {(int(y) // 4, int(x) // 4) for y, x in changed} == {(0, 0), (1, 1)}
    assert len(changed) == 32
    assert out[0:4, 0:4].tolist() == np.full((4, 4, 3), 2).tolist()


def test_the_blur_baseline_keeps_the_shape_and_smooths_the_key_cells() -> None:
    blurred = baseline_image(key_image(), "blur")
    assert blurred.shape == (64, 64, 3) and blurred.dtype == np.uint8
    assert 0 < key_scorer(blurred) < 0.25


def test_auc_is_the_trapezoid_rule_over_the_fraction_axis() -> None:
    assert auc((0.0, 0.5, 1.0), (1.0, 0.5, 0.0)) == 0.5
    assert auc((0.0, 0.25, 1.0), (1.0, 1.0, 0.0)) == 0.625


def test_deleting_the_key_cells_first_drops_the_score_after_the_first_step() -> None:
    curve = deletion_curve(key_image(), key_relevancy(), key_scorer, steps=16, baseline="mean")
    assert curve.fractions == tuple(k / 16 for k in range(17))
    assert curve.scores == (1.0,) + (MEAN,) * 16
    assert curve.auc == pytest.approx((1 + MEAN) / 2 / 16 + MEAN * 15 / 16, abs=1e-15)
    assert (curve.kind, curve.order) == ("deletion", "relevancy")


def test_inserting_the_key_cells_first_restores_the_score_after_the_first_step() -> None:
    curve = insertion_curve(key_image(), key_relevancy(), key_scorer, steps=16, baseline="mean")
    assert curve.scores == (MEAN,) + (1.0,) * 16
    assert (curve.kind, curve.order) == ("insertion", "relevancy")


@pytest.mark.parametrize("baseline", ["mean", "blur"])
def test_relevancy_order_beats_the_random_baseline_both_ways(baseline: BaselineKind) -> None:
    image, relevancy = key_image(), key_relevancy()
    deletion = deletion_curve(image, relevancy, key_scorer, baseline=baseline)
    insertion = insertion_curve(image, relevancy, key_scorer, baseline=baseline)
    random_deletion = random_baseline(image, key_scorer, seeds=3, kind="deletion", baseline=baseline)
    random_insertion = random_baseline(image, key_scorer, seeds=3, kind="insertion", baseline=baseline)
    assert deletion.auc < random_deletion.auc
    assert insertion.auc > random_insertion.auc
    assert (random_deletion.scores[0], random_deletion.scores[-1]) == (deletion.scores[0], deletion.scores[-1])
    assert random_deletion.order == "random"


def test_the_random_baseline_is_the_mean_of_its_seeded_curves() -> None:
    seeded = []
    for seed in (0, 1):
        ranks = np.zeros(256, dtype=np.float32)  # a map whose relevancy order is seed's permutation
        ranks[np.random.default_rng(seed).permutation(256)] = np.arange(256, 0, -1)
        seeded.append(deletion_curve(key_image(), ranks.reshape(GRID), key_scorer, steps=4, baseline="mean"))
    mean = random_baseline(key_image(), key_scorer, steps=4, seeds=2, baseline="mean")
    assert mean.scores == tuple((a + b) / 2 for a, b in zip(seeded[0].scores, seeded[1].scores))
    assert mean.auc == pytest.approx((seeded[0].auc + seeded[1].auc) / 2, abs=1e-15)


def test_steps_that_do_not_divide_the_cells_record_the_share_actually_removed() -> None:
    curve = deletion_curve(np.zeros((9, 9, 3), np.uint8), np.zeros((3, 3), np.float32), lambda _: 0.5, steps=4)
    assert curve.fractions == (0.0, 2 / 9, 4 / 9, 6 / 9, 1.0)
    assert curve.auc == 0.5


def test_a_report_bundles_four_curves() -> None:
    result = faithfulness_report(key_image(), key_relevancy(), key_scorer, token=3, method="rollout",
                                 steps=4, baseline="mean", seeds=2)
    assert result is not None
    assert (result.token, result.method) == (3, "rollout")
    kinds = [(c.kind, c.order) for c in (result.deletion, result.insertion, result.random_deletion,
                                          result.random_insertion)]
    assert kinds == [("deletion", "relevancy"), ("insertion", "relevancy"), ("deletion", "random"),
                     ("insertion", "random")]


def counting_scorer(calls: list[int]) -> Scorer:
    def score(image: np.ndarray) -> float:
        calls.append(1)
        return key_scorer(image)

    return score


def test_a_batch_shares_each_tokens_random_baselines_between_methods() -> None:
    calls: list[int] = []
    asked: list[int] = []

    def scorer_for(token: int) -> Scorer:
        asked.append(token)
        return counting_scorer(calls)

    items = [(0, "raw", key_relevancy()), (0, "rollout", key_relevancy()), (1, "raw", key_relevancy())]
    results = list(batch(key_image(), items, scorer_for, steps=2, baseline="mean", seeds=1))
    assert [(r.token, r.method) for r in results] == [(0, "raw"), (0, "rollout"), (1, "raw")]
    assert asked == [0, 1]
    assert len(calls) == 12 + 6 + 12  # 3 scores a curve: 4 curves, then 2, then 4
    assert results[0].random_deletion is results[1].random_deletion


def test_cancel_stops_a_batch_between_items() -> None:
    cancel = threading.Event()
    items = [(t, "raw", key_relevancy()) for t in range(5)]
    seen: list[int] = []
    with pytest.raises(Cancelled, match="^the faithfulness curves were cancelled$"):
        for result in batch(key_image(), items, lambda _: key_scorer, steps=2, baseline="mean", seeds=1,
                            cancel=cancel):
            seen.append(result.token)
            cancel.set()
    assert seen == [0]


def test_cancel_during_a_report_raises_the_one_cancellation_error() -> None:
    cancel = threading.Event()

    def scorer(image: np.ndarray) -> float:
        cancel.set()
        return key_scorer(image)

    with pytest.raises(Cancelled) as raised:
        faithfulness_report(key_image(), key_relevancy(), scorer, steps=4, cancel=cancel)
    assert raised.value.code == "cancelled"


def test_a_scorer_returning_nan_is_refused() -> None:
    with pytest.raises(RequestError, match="finite probability; got nan"):
        deletion_curve(key_image(), key_relevancy(), lambda _: float("nan"), steps=2)


def test_bad_steps_images_and_baselines_are_refused() -> None:
    with pytest.raises(RequestError, match=r"steps must be in 1\.\.256 \(the number of cells\); got 0"):
        deletion_curve(key_image(), key_relevancy(), key_scorer, steps=0)
    with pytest.raises(RequestError, match=r"\(H, W, 3\) uint8 array; got float32 \(64, 64\)"):
        mask_cells(np.zeros((64, 64), np.float32), [0], GRID, "mean")
    with pytest.raises(RequestError, match="baseline must be 'blur' or 'mean'; got 'zero'"):
        mask_cells(key_image(), [0], GRID, "zero")  # type: ignore[arg-type]
    with pytest.raises(RequestError, match=r"cell index must be in 0\.\.255; got 256"):
        mask_cells(key_image(), [256], GRID, "mean")


def test_curves_are_frozen_values() -> None:
    curve = Curve((0.0, 1.0), (1.0, 0.0), 0.5, "deletion", "relevancy")
    with pytest.raises(AttributeError):
        curve.auc = 1.0  # type: ignore[misc]
