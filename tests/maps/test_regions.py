"""Statistics, regions, zones and contrast helpers on hand-built maps with known answers.

Geometry used below: INTER_LINEAR upsampling puts grid cell j's centre at source
coordinate j + 0.5, so a block of hot cells c0..c1 on an otherwise zero map is non-zero
from the centre of cell c0 - 1 to the centre of cell c1 + 1, i.e. over
[(c0 - 0.5) / g, (c1 + 1.5) / g) of the image. With that support under 15% of the image,
the 85th percentile is 0 and the region is exactly that support.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medviz_core.errors import RequestError
from medviz_core.maps.regions import (
    MAX_VERTICES,
    compute_stats,
    find_regions,
    log_contrast,
    minmax,
    percentile_contrast,
    working_size,
    zone_of,
)
from medviz_core.types import ZONES

SQUARE = (512, 512)


def grid(size: int = 16) -> np.ndarray:
    return np.zeros((size, size), dtype=np.float32)


def test_a_single_hot_cell_top_left_is_the_peak_in_the_right_upper_zone() -> None:
    relevancy = grid()
    relevancy[2, 3] = 1.0
    stats = compute_stats(relevancy, SQUARE)
    assert stats.peak == (2, 3)
    assert stats.peak_zone == "right upper"
    assert len(stats.regions) == 1
    region = stats.regions[0]
    assert region.box == (2.5 / 16, 1.5 / 16, 2 / 16, 2 / 16)
    x, y, w, h = region.box
    assert x < 3.5 / 16 < x + w and y < 2.5 / 16 < y + h
    assert region.mass == pytest.approx(1.0)
    assert region.zone == "right upper"


def test_a_region_polygon_lies_inside_its_box() -> None:
    relevancy = grid()
    relevancy[2, 3] = 1.0
    region = find_regions(relevancy, SQUARE)[0]
    x, y, w, h = region.box
    assert 3 <= len(region.polygon) <= MAX_VERTICES
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in region.polygon)


def test_a_uniform_map_has_entropy_norm_one_and_no_regions() -> None:
    stats = compute_stats(np.full((16, 16), 0.37, dtype=np.float32), SQUARE)
    assert stats.entropy_bits == pytest.approx(8.0, abs=1e-6)
    assert stats.entropy_norm == pytest.approx(1.0, abs=1e-6)
    assert stats.regions == ()
    assert stats.peak == (0, 0)


def test_an_all_zero_map_counts_as_uniform() -> None:
    stats = compute_stats(grid(), SQUARE)
    assert stats.entropy_norm == pytest.approx(1.0, abs=1e-6)
    assert stats.regions == ()


def test_a_one_hot_map_has_zero_entropy() -> None:
    relevancy = grid()
    relevancy[9, 12] = 3.0
    stats = compute_stats(relevancy, SQUARE)
    assert stats.entropy_bits == 0.0
    assert stats.entropy_norm == 0.0
    assert math.copysign(1.0, stats.entropy_bits) == 1.0  # not -0.0


def test_entropy_of_two_equal_cells_is_one_bit() -> None:
    relevancy = grid()
    relevancy[0, 0] = relevancy[15, 15] = 2.0
    stats = compute_stats(relevancy, SQUARE)
    assert stats.entropy_bits == pytest.approx(1.0)
    assert stats.entropy_norm == pytest.approx(1 / 8)


def test_negative_values_carry_no_mass_in_the_entropy() -> None:
    relevancy = grid()
    relevancy[4, 4] = 1.0
    relevancy[5, 5] = -1.0
    assert compute_stats(relevancy, SQUARE).entropy_bits == 0.0


def test_the_first_maximum_wins_a_tie_for_the_peak() -> None:
    relevancy = grid()
    relevancy[3, 14] = relevancy[10, 1] = 1.0
    stats = compute_stats(relevancy, SQUARE)
    assert stats.peak == (3, 14)
    assert stats.peak_zone == "left upper"


def test_two_blobs_give_two_regions_ordered_by_mass() -> None:
    relevancy = grid()
    relevancy[11:13, 11:13] = 0.5  # weaker, bottom right of the image: patient's left lower
    relevancy[2:4, 2:4] = 1.0
    regions = find_regions(relevancy, SQUARE)
    assert [region.zone for region in regions] == ["right upper", "left lower"]
    assert regions[0].mass == pytest.approx(2 / 3)
    assert regions[1].mass == pytest.approx(1 / 3)
    assert sum(region.mass for region in regions) <= 1.0 + 1e-9
    assert regions[0].box == (1.5 / 16, 1.5 / 16, 3 / 16, 3 / 16)
    assert regions[1].box == (10.5 / 16, 10.5 / 16, 3 / 16, 3 / 16)


def test_only_the_three_heaviest_regions_are_kept() -> None:
    relevancy = grid()
    for index, (row, col) in enumerate([(1, 1), (1, 8), (8, 1), (8, 8), (13, 13)]):
        relevancy[row : row + 2, col : col + 2] = 1.0 + index
    regions = find_regions(relevancy, SQUARE)
    assert [region.zone for region in regions] == ["left lower", "central middle", "right middle"]
    assert find_regions(relevancy, SQUARE, keep=5)[3].zone == "central upper"


def test_a_non_square_image_scales_the_box_by_its_own_aspect() -> None:
    relevancy = grid()
    relevancy[8:12, 4:8] = 1.0
    assert working_size((786, 899)) == (224, 256)
    (region,) = find_regions(relevancy, (786, 899))
    assert region.box == (3.5 / 16, 7.5 / 16, 5 / 16, 5 / 16)
    assert region.zone == "central middle"


def test_a_wide_image_keeps_its_aspect_in_the_working_raster() -> None:
    assert working_size((1000, 500)) == (256, 128)
    assert working_size((3000, 2)) == (256, 1)


def test_a_blob_under_one_percent_of_the_area_is_dropped() -> None:
    relevancy = grid(32)
    relevancy[4:8, 4:8] = 1.0  # support 5 x 5 cells of 32 x 32: 2.4%
    relevancy[20, 20] = 1.0  # support 15 x 15 pixels of 256 x 256: 0.34%
    regions = find_regions(relevancy, SQUARE)
    assert len(regions) == 1
    assert regions[0].box == (3.5 / 32, 3.5 / 32, 5 / 32, 5 / 32)
    assert len(find_regions(relevancy, SQUARE, min_area=0.001)) == 2


@pytest.mark.parametrize(
    ("x", "y", "zone"),
    [
        (0.1, 0.1, "right upper"),
        (0.5, 0.1, "central upper"),
        (0.9, 0.1, "left upper"),
        (0.1, 0.5, "right middle"),
        (0.5, 0.5, "central middle"),
        (0.9, 0.5, "left middle"),
        (0.1, 0.9, "right lower"),
        (0.5, 0.9, "central lower"),
        (0.9, 0.9, "left lower"),
    ],
)
def test_each_grid_cell_has_its_radiological_zone(x: float, y: float, zone: str) -> None:
    assert zone_of(x, y) == zone
    assert zone in ZONES


def test_zone_boundaries_belong_to_the_middle_band() -> None:
    assert zone_of(1 / 3, 2 / 3) == "central middle"
    assert zone_of(0.3333, 0.6667) == "right lower"


def test_percentile_contrast_clips_to_the_5th_and_95th_percentiles() -> None:
    values = np.arange(101, dtype=np.float64)  # percentiles are the values themselves
    enhanced = percentile_contrast(values)
    assert enhanced.dtype == np.float32
    assert enhanced[0] == 0.0 and enhanced[5] == 0.0
    assert enhanced[50] == pytest.approx(0.5)
    assert enhanced[95] == 1.0 and enhanced[100] == 1.0


def test_log_contrast_spreads_small_values() -> None:
    enhanced = log_contrast(np.array([0.0, 1e-4, 1.0]))
    assert enhanced.dtype == np.float32
    assert enhanced.tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-4)


def test_minmax_scales_to_unit_range_and_gives_zeros_when_constant() -> None:
    assert minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    flat = minmax(np.full((2, 2), 7.0))
    assert flat.dtype == np.float32
    assert flat.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert percentile_contrast(np.full(4, 3.0)).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_a_map_that_is_not_two_dimensional_is_refused() -> None:
    with pytest.raises(RequestError, match=r"^a relevancy map must be a non-empty 2-D array; got shape \(256,\)$"):
        compute_stats(np.zeros(256, dtype=np.float32), SQUARE)


def test_an_image_size_that_is_not_positive_is_refused() -> None:
    with pytest.raises(RequestError, match=r"^image_size must be \(width, height\) of positive ints; got \(0, 10\)$"):
        find_regions(grid(), (0, 10))
