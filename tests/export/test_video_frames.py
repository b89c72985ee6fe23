"""A video's frame: its words in the font that ships with Pillow, the colour bar's numbers in one unit as the
browser writes them, the report's lines, and the picture of a token drawn at the size asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medviz_core.export.overlay import render_overlay
from medviz_core.export.video_frames import FramePainter, Layout, is_lateral, one_unit, typeable, wrap_spans
from medviz_core.recording.file import read_recording
from medviz_core.types import STAND_IN_NOTE
from medviz_core.wire.server_frames import StepFrame
from server.cli.main import main


def test_the_colour_bar_writes_both_ends_in_one_unit_as_the_browser_does() -> None:
    assert one_unit(3.17e-7, 1.15e-5) == ("0.03", "1.15", -5)  # "0.03 … 1.15 ×10⁻⁵" in web/js/format.js
    assert one_unit(0.002, 0.0123) == ("0.0020", "0.0123", 0)
    assert one_unit(0.021, 0.979) == ("0.021", "0.979", 0)
    assert one_unit(0.0, 0.0) == ("0", "0", 0)


def test_characters_the_font_lacks_become_ones_it_has_one_for_one() -> None:
    assert typeable("effusion · “left” 5%") == "effusion · “left” 5%"
    assert typeable("pleural — café ×2\t↵") == "pleural - cafe x2  "
    assert typeable("肺") == "?"


def test_the_report_wraps_after_spaces_at_newlines_and_inside_words_longer_than_a_line() -> None:
    text = "aaa bbb cc\nd eeeeeeeeee"
    assert [text[a:b] for a, b in wrap_spans(text, 7, len)] == ["aaa bbb ", "cc", "d ", "eeeeeee", "eee"]
    blank = "a\n\nb"
    assert [blank[a:b] for a, b in wrap_spans(blank, 7, len)] == ["a", "", "b"]


def test_lateral_views_are_known_by_their_labels() -> None:
    assert [is_lateral(label) for label in ("lateral", "LL", " lat ", "PA", "AP", "frontal", "")] == [
        True, True, True, False, False, False, False]


def test_a_frame_holds_the_tokens_overlay_inside_its_picture_box(tmp_path: Path, cxr_dir: Path,
                                                                  tiny_engine: Any) -> None:
    recording = tmp_path / "two.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(recording), "--model", "tiny",
                 "--max-new-tokens", "2"]) == 0
    read = read_recording(recording)
    assert read.start is not None
    steps = tuple(f.frame for f in read.steps if isinstance(f.frame, StepFrame))
    painter = FramePainter(read.start, steps, "rollout", (640, 360))
    frame = painter.frame(1)
    assert (frame.shape, frame.dtype) == ((360, 640, 3), np.uint8)
    box = Layout.of((640, 360), [read.start.images[0].size], STAND_IN_NOTE).pictures[0]
    assert box == painter.layout.pictures[0]
    overlay = render_overlay(painter.pictures[0], steps[1].images[0].values("rollout", read.start.model.grid), ())
    inside = frame[box.y : box.y + box.h, box.x : box.x + box.w]
    # the regions' outlines, labels and R/L marks are drawn over it; the rest of the picture is the overlay's
    assert (inside == overlay).all(axis=2).mean() > 0.8
