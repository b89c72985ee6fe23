"""The formulas of docs/relevancy.md on hand-made attention rows: flow's weights and head_importance's selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medviz_core.maps.relevancy import compute_maps, flow_weights, head_importance


def test_flow_keeps_half_on_the_last_layer_and_normalises_the_halving_weights_below() -> None:
    # L = 4: S = 1 + 0.5 + 0.25 = 1.75; layer 2 gets 0.5 * 1 / S, layer 1 0.5 * 0.5 / S, layer 0 0.5 * 0.25 / S.
    assert flow_weights(4).tolist() == pytest.approx([1 / 14, 2 / 14, 4 / 14, 0.5], abs=1e-7)
    assert float(flow_weights(34).sum()) == pytest.approx(1.0, abs=1e-6)


def test_flow_of_one_layer_is_raw_and_of_two_layers_is_their_mean() -> None:
    assert flow_weights(1).tolist() == [1.0]
    assert flow_weights(2).tolist() == [0.5, 0.5]


def test_head_importance_keeps_the_strongest_focused_half_of_the_heads() -> None:
    rows = np.array(
        [
            [0.40, 0.00, 0.00, 0.00],  # strong and focused: importance 0.40 / (1 + 0)
            [0.05, 0.05, 0.05, 0.05],  # spread out: 0.05 / (1 + ln 4)
            [0.00, 0.30, 0.00, 0.00],  # strong and focused: 0.30
            [0.00, 0.00, 0.00, 0.00],  # no attention on the image: importance 0
        ]
    )
    # Heads 0 and 2 are kept (ceil(4 / 2) = 2); weights 0.4 / 0.7 and 0.3 / 0.7.
    expected = [0.4 * 0.4 / 0.7, 0.3 * 0.3 / 0.7, 0.0, 0.0]
    assert head_importance(rows).tolist() == pytest.approx(expected, abs=1e-6)


def test_head_importance_takes_the_raw_peak_not_the_normalised_one() -> None:
    # Both heads are fully focused (normalised peak 1); head 1 looks three times as strongly, so it is the one kept.
    rows = np.array([[0.2, 0.0], [0.0, 0.6]])
    assert head_importance(rows).tolist() == pytest.approx([0.0, 0.6], abs=1e-6)


def test_tied_heads_keep_the_lower_index() -> None:
    rows = np.array([[0.0, 0.5], [0.5, 0.0], [0.5, 0.0]])  # three equal importances, ceil(3 / 2) = 2 kept
    assert head_importance(rows).tolist() == pytest.approx([0.25, 0.25], abs=1e-6)  # heads 0 and 1, equal weights


def test_no_head_on_the_image_gives_a_zero_map() -> None:
    assert head_importance(np.zeros((4, 3))).tolist() == [0.0, 0.0, 0.0]


def test_entropy_is_taken_on_the_normalised_row() -> None:
    rows = np.array([[0.1, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # p = (0.5, 0.5): H = ln 2, importance = 0.1 / (1 + ln 2); one head kept, so its weight is 1.
    assert head_importance(rows).tolist() == pytest.approx([0.1, 0.1, 0.0, 0.0], abs=1e-6)


def test_importance_divides_the_peak_by_one_plus_the_entropy() -> None:
    focused = np.array([[0.0, 0.3, 0.0, 0.0]])  # importance 0.3 / (1 + 0) = 0.3
    spread = np.array([[0.2, 0.2, 0.2, 0.2]])  # importance 0.2 / (1 + ln 4) = 0.084
    both = np.concatenate([spread, focused])
    assert 0.2 / (1 + math.log(4)) < 0.3
    assert head_importance(both).tolist() == pytest.approx([0.0, 0.3, 0.0, 0.0], abs=1e-6)


def test_consensus_averages_the_min_max_normalised_maps() -> None:
    rows = np.array([[[0.2, 0.1, 0.0, 0.1]], [[0.4, 0.0, 0.2, 0.0]]])  # [layers, heads, N]
    rollout = np.array([0.0, 1.0, 2.0, 3.0])
    methods = ("raw", "layer_weighted", "head_importance", "flow", "rollout", "consensus")
    by_name, mass = compute_maps(rows.mean(1), rows[-1], rollout, methods)
    assert list(by_name) == list(methods)
    assert by_name["raw"].tolist() == pytest.approx([0.4, 0.0, 0.2, 0.0])
    assert by_name["flow"].tolist() == pytest.approx([0.3, 0.05, 0.1, 0.05])
    normalised = [
        [1.0, 0.0, 1 / 3, 0.0],  # layer_weighted [0.25, 0.025, 0.1, 0.025]
        [1.0, 0.0, 0.5, 0.0],  # head_importance (one head: the last layer's row)
        [1.0, 0.0, 0.2, 0.0],  # flow [0.3, 0.05, 0.1, 0.05]
        [0.0, 1 / 3, 2 / 3, 1.0],  # rollout
    ]
    expected = [sum(column) / 4 for column in zip(*normalised)]
    assert by_name["consensus"].tolist() == pytest.approx(expected, abs=1e-6)
    assert float(mass) == pytest.approx((0.4 + 0.6) / 2)
