"""Pointing game, IoU and coverage on hand-computed cases, and the real labels.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medviz_core.analyses.agreement import (
    Box,
    agreement_for_steps,
    box_coverage,
    format_report,
    iou_top_regions,
    load_boxes,
    pointing_game,
    top_region_mask,
)
from medviz_core.errors import RequestError

SIZE = (64, 64)  # (W, H): a 16 x 16 grid of 4-pixel cells


def box(x: int, y: int, w: int, h: int, label: str = "finding") -> Box:
    return Box(label, "test", x, y, w, h, image_width=64, image_height=64)


def peak_at(row: int, col: int) -> np.ndarray:
    relevancy = np.zeros((16, 16), dtype=np.float32)
    relevancy[row, col] = 1.0
    return relevancy


def hot_block() -> np.ndarray:
    """Cells rows 2-3, cols 4-5 hot: pixels x 16..23, y 8..15."""
    relevancy = np.zeros((16, 16), dtype=np.float32)
    relevancy[2:4, 4:6] = 1.0
    return relevancy


# Peak cell (5, 7) has its centre at ((7 + 0.5) / 16 * 64, (5 + 0.5) / 16 * 64) = (30, 22).


def test_a_peak_inside_a_box_is_a_hit() -> None:
    assert pointing_game(peak_at(5, 7), [box(24, 16, 12, 12)], SIZE) is True


def test_a_peak_just_outside_a_box_but_within_tolerance_is_a_hit() -> None:
    assert pointing_game(peak_at(5, 7), [box(40, 16, 10, 10)], SIZE, tolerance_px=15) is True


def test_the_grown_box_edge_counts_as_inside() -> None:
    assert pointing_game(peak_at(5, 7), [box(45, 16, 10, 10)], SIZE, tolerance_px=15) is True


def test_a_peak_beyond_the_tolerance_is_a_miss() -> None:
    assert pointing_game(peak_at(5, 7), [box(46, 16, 10, 10)], SIZE, tolerance_px=15) is False
    assert pointing_game(peak_at(5, 7), [box(40, 16, 10, 10)], SIZE, tolerance_px=5) is False


def test_any_box_can_take_the_hit() -> None:
    assert pointing_game(peak_at(5, 7), [box(0, 50, 5, 5), box(28, 20, 4, 4)], SIZE, tolerance_px=0) is True


def test_the_peak_maps_onto_a_non_square_image_by_cell_centre() -> None:
    # 786 x 899 image, cell (0, 15) centre = (15.5 / 16 * 786, 0.5 / 16 * 899) = (761.4375, 28.09375)
    # a 1-pixel box at (762, 29) is 0.5625 px right of it and 0.90625 px below it
    dot = Box("x", "test", 762, 29, 1, 1, image_width=786, image_height=899)
    assert pointing_game(peak_at(0, 15), [dot], (786, 899), tolerance_px=0.90625) is True
    assert pointing_game(peak_at(0, 15), [dot], (786, 899), tolerance_px=0.9) is False


def test_iou_of_a_hot_block_and_the_box_over_exactly_its_cells_is_one() -> None:
    assert iou_top_regions(hot_block(), [box(16, 8, 8, 8)], SIZE) == 1.0
    assert box_coverage(hot_block(), [box(16, 8, 8, 8)], SIZE) == 1.0


def test_iou_of_a_half_shifted_box_is_one_third() -> None:
    # box x 20..27: intersection 4 x 8 = 32 px, union 64 + 64 - 32 = 96 px
    assert iou_top_regions(hot_block(), [box(20, 8, 8, 8)], SIZE) == 32 / 96
    assert box_coverage(hot_block(), [box(20, 8, 8, 8)], SIZE) == 0.5


def test_overlapping_boxes_count_once_in_the_union() -> None:
    # the union of the two boxes is x 16..27, y 8..15 = 96 px; intersection with the block 64 px
    assert iou_top_regions(hot_block(), [box(16, 8, 8, 8), box(20, 8, 8, 8)], SIZE) == 64 / 96


def test_the_top_region_mask_is_cell_exact_without_interpolation() -> None:
    mask = top_region_mask(hot_block(), SIZE)
    assert mask.shape == (64, 64)
    assert np.count_nonzero(mask) == 64
    assert mask[8:16, 16:24].all()


def test_a_constant_map_has_no_top_region() -> None:
    flat = np.ones((16, 16), dtype=np.float32)
    assert np.count_nonzero(top_region_mask(flat, SIZE)) == 0
    assert iou_top_regions(flat, [box(16, 8, 8, 8)], SIZE) == 0.0


def test_no_boxes_raise_a_request_error() -> None:
    with pytest.raises(RequestError, match="at least one annotation box; got none"):
        pointing_game(hot_block(), [], SIZE)
    with pytest.raises(RequestError, match="at least one annotation box; got none"):
        iou_top_regions(hot_block(), [], SIZE)


def test_boxes_of_another_image_size_are_refused() -> None:
    with pytest.raises(RequestError, match="belongs to a 64x64 image; got image size 128x64"):
        pointing_game(hot_block(), [box(0, 0, 4, 4)], (128, 64))


def test_a_map_with_nan_is_refused() -> None:
    bad = hot_block()
    bad[0, 0] = np.nan
    with pytest.raises(RequestError, match="finite values"):
        pointing_game(bad, [box(0, 0, 4, 4)], SIZE)


def test_agreement_summarises_each_method_over_the_tokens() -> None:
    steps = [
        {"rollout": hot_block(), "raw": peak_at(15, 15)},
        {"rollout": peak_at(2, 4), "gradient": hot_block()},
    ]
    result = agreement_for_steps(steps, [box(16, 8, 8, 8)], SIZE)
    assert [m.method for m in result.methods] == ["raw", "rollout", "gradient"]
    raw, rollout, gradient = result.methods
    assert (raw.tokens, raw.hits, raw.ious) == ((0,), (False,), (0.0,))
    assert (rollout.tokens, rollout.hits) == ((0, 1), (True, True))
    assert rollout.ious == (1.0, 16 / 64)  # one 4 x 4 cell inside the 8 x 8 box
    assert (rollout.hit_rate, rollout.mean_iou, rollout.mean_coverage) == (1.0, 0.625, 0.625)
    assert (gradient.tokens, gradient.hit_rate) == ((1,), 1.0)


def test_the_report_is_a_plain_text_table() -> None:
    result = agreement_for_steps([{"rollout": hot_block()}, {"rollout": peak_at(15, 15)}], [box(16, 8, 8, 8)], SIZE)
    assert format_report(result, title="sample") == (
        "sample\n"
        "image 64x64, boxes: finding\n"
        "method           tokens hit rate mean IoU coverage\n"
        "rollout               2    0.500    0.500    0.500\n"
    )


def test_agreement_needs_at_least_one_token() -> None:
    with pytest.raises(RequestError, match="at least one token's maps; got none"):
        agreement_for_steps([], [box(0, 0, 4, 4)], SIZE)


def test_the_real_labels_give_the_jpegs_three_anatomy_boxes(cxr_dir: Path) -> None:
    boxes = load_boxes(cxr_dir / "labels.csv")
    assert len(boxes) == 6
    assert boxes["nih_00000001_000.png"] == []
    kind = "anatomy (HybridGNet mask, model-generated)"
    assert boxes["commons_haggstrom_normal_pa.jpg"] == [
        Box("heart", kind, 275, 417, 323, 342, 786, 899),
        Box("right lung", kind, 48, 102, 304, 718, 786, 899),
        Box("left lung", kind, 424, 94, 317, 728, 786, 899),
    ]
    assert boxes["commons_haggstrom_normal_pa.jpg"][0].normalized() == (275 / 786, 417 / 899, 323 / 786, 342 / 899)


def write_labels(tmp_path: Path, width: str, boxes: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(f'file,width,height,boxes\na.png,64,64,[]\nb.png,{width},64,"{boxes}"\n', encoding="utf-8")
    return path


def test_bad_json_names_the_row_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=r"labels.csv row 2: column 'boxes' is not valid JSON \(Expecting value"):
        load_boxes(write_labels(tmp_path, "64", "[oops]"))


def test_a_box_outside_the_image_names_the_row(tmp_path: Path) -> None:
    outside = '[{""label"": ""a"", ""kind"": ""k"", ""xywh"": [60, 0, 10, 4]}]'
    with pytest.raises(RequestError, match=r"row 2: box 0 xywh \[60, 0, 10, 4\] must .* inside the 64x64 image"):
        load_boxes(write_labels(tmp_path, "64", outside))


def test_a_bad_width_and_a_short_xywh_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="row 2: column 'width' must be a positive integer; got 'wide'"):
        load_boxes(write_labels(tmp_path, "wide", "[]"))
    short = '[{""label"": ""a"", ""kind"": ""k"", ""xywh"": [1, 2, 3]}]'
    with pytest.raises(RequestError, match=r"row 2: box 0 'xywh' must be a list of 4 integer pixel values"):
        load_boxes(write_labels(tmp_path, "64", short))


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("file,width\na.png,64\n", encoding="utf-8")
    with pytest.raises(RequestError, match=r"missing \['boxes', 'height'\]"):
        load_boxes(path)
