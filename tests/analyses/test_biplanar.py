"""The biplanar 3D estimate on synthetic studies with known answers, and the choice of views.

A synthetic study is a frontal map hot at (row r, col c) and a lateral map hot at (row r,
col d) over a faint seeded background (under 0.1): the volume must peak at (r, c, d).
Maps wider or taller than the grid are built so that each hot input cell lies wholly
inside one grid cell's span (box_weights), so area resampling keeps the peak on that cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medviz_core.analyses.biplanar import MAX_SIZE, biplanar_volume, box_weights, choose_views, view_kind
from medviz_core.errors import RequestError
from medviz_core.imaging.study import VIEW_LABELS


def background(shape: tuple[int, int], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 0.1).astype(np.float32)


def inside(k: int, n_in: int, n_out: int) -> int:
    """The first input cell lying wholly inside grid cell k's span [k * n_in / n_out, ...)."""
    start = int(np.ceil(k * n_in / n_out - 1e-9))
    assert start + 1 <= (k + 1) * n_in / n_out + 1e-9, "the test needs n_in / n_out >= 1 with a whole cell per span"
    return start


def hot(shape: tuple[int, int], row: int, col: int, seed: int) -> np.ndarray:
    grid = background(shape, seed)
    grid[row, col] = 1.0
    return grid


CORNERS_AND_INSIDE = [(0, 0, 0), (15, 15, 15), (0, 15, 0), (15, 0, 15), (0, 0, 15), (7, 3, 12), (9, 14, 1)]


@pytest.mark.parametrize(("r", "c", "d"), CORNERS_AND_INSIDE)
def test_one_focus_puts_the_volume_maximum_at_its_row_frontal_column_and_lateral_column(r: int, c: int, d: int) -> None:
    volume = biplanar_volume(hot((16, 16), r, c, seed=1), hot((16, 16), r, d, seed=2))
    assert volume.peak == (r, c, d)
    assert volume.values[r, c, d] == 1.0
    assert int(np.count_nonzero(volume.values == volume.values.max())) == 1


@pytest.mark.parametrize(("r", "c", "d"), CORNERS_AND_INSIDE)
def test_maps_of_other_heights_and_widths_are_area_resampled_and_keep_the_peak_cell(r: int, c: int, d: int) -> None:
    # frontal 32 rows x 24 columns (1.5 columns per grid cell), lateral 16 rows x 40 columns (2.5 per cell)
    frontal = hot((32, 24), inside(r, 32, 16), inside(c, 24, 16), seed=3)
    lateral = hot((16, 40), r, inside(d, 40, 16), seed=4)
    volume = biplanar_volume(frontal, lateral, size=16)
    assert volume.values.shape == (16, 16, 16)
    assert volume.peak == (r, c, d)
    assert int(np.count_nonzero(volume.values == 1.0)) == 1


def test_a_coarse_map_is_upsampled_so_its_hot_cell_fills_exactly_the_grid_cells_it_covers() -> None:
    frontal = np.zeros((8, 8))
    frontal[3, 5] = 1.0  # covers grid rows 6..7, columns 10..11
    lateral = np.zeros((8, 4))
    lateral[3, 1] = 1.0  # covers grid rows 6..7, depths 4..7
    volume = biplanar_volume(frontal, lateral, size=16)
    maxima = {tuple(int(i) for i in cell) for cell in np.argwhere(volume.values == 1.0)}
    assert maxima == {(y, x, z) for y in (6, 7) for x in (10, 11) for z in (4, 5, 6, 7)}
    assert float(volume.values.sum()) == 16.0
    assert volume.peak == (6, 10, 4)  # the first maximum in [y, x, z] order


def test_box_weights_are_the_identity_for_equal_sizes_and_spans_otherwise() -> None:
    assert np.array_equal(box_weights(16, 16), np.eye(16))
    assert box_weights(3, 2).tolist() == [[2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3]]
    assert box_weights(1, 3).tolist() == [[1.0], [1.0], [1.0]]


def test_the_volume_is_the_product_divided_by_its_maximum_and_keeps_that_maximum_as_scale() -> None:
    frontal = np.arange(16, dtype=np.float64).reshape(4, 4) % 5  # small integers: every product is exact
    lateral = (np.arange(16, dtype=np.float64).reshape(4, 4) * 3) % 4
    volume = biplanar_volume(frontal, lateral, size=4)
    top = max(frontal[y, x] * lateral[y, z] for y in range(4) for x in range(4) for z in range(4))
    expected = np.array([[[frontal[y, x] * lateral[y, z] / top for z in range(4)] for x in range(4)] for y in range(4)],
                        dtype=np.float32)
    assert volume.scale == top == 12.0
    assert volume.values.dtype == np.float32
    assert np.array_equal(volume.values, expected)
    assert float(volume.values.max()) == 1.0


def test_scaling_either_map_changes_the_scale_but_not_the_values() -> None:
    frontal, lateral = hot((16, 16), 4, 5, seed=5), hot((16, 16), 4, 9, seed=6)
    base = biplanar_volume(frontal, lateral)
    scaled = biplanar_volume(frontal * 4, lateral * 0.5)
    assert np.array_equal(scaled.values, base.values)
    assert scaled.scale == base.scale * 2


def test_the_flat_float32_bytes_are_in_y_x_z_order_as_volume_js_reads_them() -> None:
    volume = biplanar_volume(hot((16, 16), 5, 2, seed=7), hot((16, 16), 5, 11, seed=8))
    flat = np.frombuffer(volume.values.tobytes(), dtype="<f4")
    assert flat.size == 16**3
    assert int(np.argmax(flat)) == (5 * 16 + 2) * 16 + 11
    assert volume.values.flags.c_contiguous and not volume.values.flags.writeable
    assert volume.size == 16


def test_negative_relevancy_is_clipped_to_zero_before_the_product() -> None:
    frontal, lateral = hot((16, 16), 3, 3, seed=9), hot((16, 16), 3, 12, seed=10)
    signed = frontal.copy()
    signed[0:2, :] = -5.0
    clipped = frontal.copy()
    clipped[0:2, :] = 0.0
    assert np.array_equal(biplanar_volume(signed, lateral).values, biplanar_volume(clipped, lateral).values)


@pytest.mark.parametrize("zero", ["frontal", "lateral", "negative"])
def test_a_zero_map_gives_a_zero_volume_with_no_peak_and_no_nan(zero: str) -> None:
    some = hot((16, 16), 2, 2, seed=11)
    nothing = np.full((16, 16), -1.0) if zero == "negative" else np.zeros((16, 16))
    volume = biplanar_volume(nothing, some) if zero in ("frontal", "negative") else biplanar_volume(some, nothing)
    assert volume.peak is None
    assert volume.scale == 0.0
    assert volume.values.shape == (16, 16, 16)
    assert not np.isnan(volume.values).any()
    assert float(np.abs(volume.values).max()) == 0.0


def test_views_hot_on_different_rows_do_not_meet_and_give_a_zero_volume() -> None:
    frontal, lateral = np.zeros((16, 16)), np.zeros((16, 16))
    frontal[2, 7] = 1.0
    lateral[9, 7] = 1.0
    volume = biplanar_volume(frontal, lateral)
    assert volume.peak is None and float(volume.values.max()) == 0.0


def test_two_foci_at_one_level_give_two_ghost_peaks_as_high_as_the_true_ones() -> None:
    frontal, lateral = np.zeros((16, 16)), np.zeros((16, 16))
    frontal[6, [3, 12]] = 1.0  # true foci at (6, 3, 2) and (6, 12, 13)
    lateral[6, [2, 13]] = 1.0
    volume = biplanar_volume(frontal, lateral)
    maxima = {tuple(int(i) for i in cell) for cell in np.argwhere(volume.values == 1.0)}
    assert maxima == {(6, 3, 2), (6, 12, 13), (6, 3, 13), (6, 12, 2)}


def test_two_foci_at_different_levels_give_no_ghosts() -> None:
    frontal, lateral = np.zeros((16, 16)), np.zeros((16, 16))
    frontal[3, 4] = frontal[11, 12] = 1.0
    lateral[3, 1] = lateral[11, 14] = 1.0
    volume = biplanar_volume(frontal, lateral)
    maxima = {tuple(int(i) for i in cell) for cell in np.argwhere(volume.values > 0)}
    assert maxima == {(3, 4, 1), (11, 12, 14)}


def test_images_displayed_the_other_way_round_are_mirrored_into_the_patients_frame() -> None:
    frontal, lateral = hot((16, 16), 8, 2, seed=12), hot((16, 16), 8, 4, seed=13)
    assert biplanar_volume(frontal, lateral).peak == (8, 2, 4)
    assert biplanar_volume(frontal, lateral, frontal_right_on="right").peak == (8, 13, 4)
    assert biplanar_volume(frontal, lateral, lateral_anterior_on="right").peak == (8, 2, 11)


def test_the_size_sets_the_grid_side_down_to_one_cell() -> None:
    frontal, lateral = hot((16, 16), 9, 6, seed=14), hot((16, 16), 9, 1, seed=15)
    assert biplanar_volume(frontal, lateral, size=8).values.shape == (8, 8, 8)
    one = biplanar_volume(frontal, lateral, size=1)
    assert one.values.tolist() == [[[1.0]]] and one.peak == (0, 0, 0)


OK_MAP = np.ones((16, 16))
BAD_MAPS: list[tuple[Any, str]] = [
    (np.ones(16), "the frontal map must be 2-D (rows, columns); got shape (16,)"),
    (np.ones((2, 16, 16)), "the frontal map must be 2-D (rows, columns); got shape (2, 16, 16)"),
    (np.ones((0, 16)), "the frontal map must have at least one row and one column; got shape (0, 16)"),
    (np.where(np.eye(16) > 0, np.nan, 1.0), "the frontal map must be finite; got 16 NaN or infinite value(s) in shape (16, 16)"),
    (np.full((4, 4), np.inf), "the frontal map must be finite; got 16 NaN or infinite value(s) in shape (4, 4)"),
    (np.ones((4, 4), dtype=complex), "the frontal map must hold real numbers; got dtype complex128"),
    ([["a", "b"]], "the frontal map must hold real numbers; got dtype <U1"),
    (np.ones((4, 4), dtype=bool), "the frontal map must hold real numbers; got dtype bool"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_MAPS)
def test_a_bad_frontal_map_is_refused_with_what_was_expected_and_what_came(bad: Any, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        biplanar_volume(bad, OK_MAP)
    assert caught.value.message == message
    assert caught.value.code == "bad_request"


def test_a_bad_lateral_map_is_named_as_the_lateral() -> None:
    lateral = np.ones((16, 16))
    lateral[3, 3] = np.nan
    with pytest.raises(RequestError) as caught:
        biplanar_volume(OK_MAP, lateral)
    assert caught.value.message == "the lateral map must be finite; got 1 NaN or infinite value(s) in shape (16, 16)"


@pytest.mark.parametrize("size", [0, -3, MAX_SIZE + 1, 2.5, True, "16"])
def test_a_size_outside_one_to_max_size_is_refused(size: Any) -> None:
    with pytest.raises(RequestError) as caught:
        biplanar_volume(OK_MAP, OK_MAP, size=size)
    assert caught.value.message == f"the volume size must be an integer from 1 to 64; got {size!r}"


def test_a_side_other_than_left_or_right_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        biplanar_volume(OK_MAP, OK_MAP, lateral_anterior_on="front")  # type: ignore[arg-type]
    assert caught.value.message == "lateral_anterior_on must be 'left' or 'right'; got 'front'"


@pytest.mark.parametrize(("labels", "expected"), [
    (["PA", "lateral"], (0, 1)),
    (["lateral", "PA"], (1, 0)),
    (["AP", "LL"], (0, 1)),
    (["RL", "pa"], (1, 0)),
    (["Frontal", "Lat"], (0, 1)),
    ([" PA ", "LATERAL"], (0, 1)),
    (["ap", "lat"], (0, 1)),
    (["", "PA", "oblique", "LL"], (1, 3)),
    (["frontal", "lateral", ""], (0, 1)),
])
def test_one_frontal_and_one_lateral_label_choose_the_two_views(labels: list[str], expected: tuple[int, int]) -> None:
    assert choose_views(labels) == expected


@pytest.mark.parametrize("labels", [
    [], ["PA"], ["lateral"], ["", ""], ["PA", "AP", "lateral"], ["PA", "LL", "RL"], ["PA", "PA", "LAT"],
    ["oblique", "lordotic"], ["PA", "decubitus"],
])
def test_a_study_without_exactly_one_frontal_and_one_lateral_has_no_views_to_combine(labels: list[str]) -> None:
    assert choose_views(labels) is None


def test_every_dicom_view_position_that_study_py_knows_has_its_kind() -> None:
    kinds = {position: view_kind(position) for position in VIEW_LABELS}
    assert kinds == {"PA": "frontal", "AP": "frontal", "LATERAL": "lateral", "LL": "lateral", "RL": "lateral", "LAT": "lateral"}
    assert {label: view_kind(label) for label in set(VIEW_LABELS.values())} == {"PA": "frontal", "AP": "frontal", "lateral": "lateral"}


def test_a_label_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        choose_views(["PA", 3])  # type: ignore[list-item]
    assert caught.value.message == "a view label must be a string; got int"
