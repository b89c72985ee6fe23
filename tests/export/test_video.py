"""`medviz video`: a recording of five tokens made with the tiny model becomes an H.264 MP4 that the encoder
wheel's own ffmpeg reads back frame by frame, an animated GIF and WebP that Pillow reads, timed by the
recording or one token per frame; and every refusal is one line that names what it expected."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from medviz_core.export.video import VideoOptions, frame_counts, plan_video
from medviz_core.export.video_frames import Layout
from medviz_core.recording.file import RecordingWriter, read_recording
from medviz_core.types import STAND_IN_NOTE
from server.cli.main import main

TOKENS = 5
SIZE = "320x240"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, cxr_dir: Path, tiny_engine: Any) -> Path:
    out = tmp_path_factory.mktemp("video") / "clip.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(out), "--model", "tiny",
                 "--max-new-tokens", str(TOKENS)]) == 0
    assert len(read_recording(out).steps) == TOKENS
    return out


def video(recording: Path, out: Path, *options: str) -> int:
    return main(["video", str(recording), "--out", str(out), "--size", SIZE, "--quiet", *options])


def decoded(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The metadata ffmpeg reports and every frame as (240, 320, 3) RGB."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, [np.frombuffer(frame, dtype=np.uint8).reshape(height, width, 3) for frame in reader]


def test_an_mp4_at_fps_is_h264_in_yuv420p_with_one_frame_per_token_and_its_index_first(recording: Path,
                                                                                         tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    assert video(recording, out, "--fps", "4") == 0
    meta, frames = decoded(out)
    assert (meta["codec"], meta["pix_fmt"], meta["fps"], meta["size"]) == ("h264", "yuv420p(progressive)", 4.0,
                                                                           (320, 240))
    assert len(frames) == TOKENS
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: plays while it downloads
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # nothing half-written beside it


def test_two_tokens_differ_in_the_heatmap_area(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    assert video(recording, out, "--fps", "4") == 0
    start = read_recording(recording).start
    assert start is not None
    box = Layout.of((320, 240), [start.images[0].size], STAND_IN_NOTE).pictures[0]
    _, frames = decoded(out)
    first, second = (f[box.y : box.y + box.h, box.x : box.x + box.w].astype(int) for f in frames[:2])
    assert np.abs(first - second).mean() > 1.0


def test_a_video_timed_by_the_recording_lasts_its_gaps_in_frames(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "timed.mp4"
    assert video(recording, out, "--speed", "2") == 0
    meta, frames = decoded(out)
    plan = plan_video(recording, out, VideoOptions(size=(320, 240), speed=2))
    assert (meta["fps"], len(frames)) == (25.0, plan.frames)
    assert len(plan.counts) == TOKENS and min(plan.counts) >= 1


def test_each_token_lasts_the_gap_to_the_next_at_the_speed_and_at_least_one_frame() -> None:
    steps: Any = tuple(SimpleNamespace(t_ms=t) for t in (0.0, 100.0, 1000.0, 1040.0))
    assert frame_counts(steps, range(4), 2000.0, 1.0) == (2, 23, 1, 24)  # 25 frames a second
    assert frame_counts(steps, range(4), 2000.0, 2.0) == (1, 11, 1, 12)
    assert frame_counts(steps, range(1, 3), None, 1.0) == (22, 2)  # the last shown lasts until the next token
    close: Any = tuple(SimpleNamespace(t_ms=t) for t in (0.0, 10.0, 20.0))
    assert frame_counts(close, range(3), None, 1.0) == (1, 1, 1)


def test_a_gif_and_a_webp_hold_one_picture_per_token_for_a_quarter_second_each(recording: Path,
                                                                               tmp_path: Path) -> None:
    for name in ("clip.gif", "clip.webp"):
        assert video(recording, tmp_path / name, "--fps", "4") == 0
        with Image.open(tmp_path / name) as animation:
            assert (animation.n_frames, animation.size, animation.info["loop"]) == (TOKENS, (320, 240), 0)
            durations = []
            for index in range(TOKENS):
                animation.seek(index)
                animation.load()  # WebP reads a frame's duration when it decodes it
                durations.append(animation.info["duration"])
        assert durations == [250] * TOKENS


def test_a_token_range_shows_those_tokens_only(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "range.gif"
    assert video(recording, out, "--fps", "4", "--token-range", "1:3") == 0
    with Image.open(out) as animation:
        assert animation.n_frames == 3


def test_the_same_recording_and_options_give_the_same_bytes(recording: Path, tmp_path: Path) -> None:
    assert video(recording, tmp_path / "a.mp4", "--fps", "4") == 0
    assert video(recording, tmp_path / "b.mp4", "--fps", "4") == 0
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_an_unknown_suffix_is_one_line_naming_the_formats(recording: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert video(recording, tmp_path / "clip.avi") == 2
    assert capsys.readouterr().err == ("medviz: 'clip.avi': a video is .mp4 (H.264 MP4), .gif (animated GIF), "
                                       ".webp (animated WebP); got '.avi'\n")
    assert list(tmp_path.iterdir()) == []


def test_a_recording_without_tokens_is_one_line(recording: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.medviz"
    with RecordingWriter(empty) as writer:
        writer.write(read_recording(recording).frames[0].data)  # the start frame alone
    assert video(empty, tmp_path / "empty.mp4") == 2
    assert capsys.readouterr().err == "medviz: recording 'empty' has no tokens: there is nothing to show\n"
    assert not (tmp_path / "empty.mp4").exists()


def test_a_method_the_recording_lacks_is_one_line_naming_those_it_has(recording: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert video(recording, tmp_path / "clip.mp4", "--method", "gradient") == 2
    assert capsys.readouterr().err == ("medviz: method 'gradient' is not in recording 'clip'; it has raw, "
                                       "layer_weighted, head_importance, flow, rollout, consensus\n")


@pytest.mark.parametrize(("size", "message"), [
    ("big", "size must be WxH in pixels, e.g. 1280x720; got 'big'"),
    ("321x240", "size must have even sides from 160x120 to 3840x2160; got 321x240"),
    ("8000x240", "size must have even sides from 160x120 to 3840x2160; got 8000x240"),
])
def test_a_bad_size_is_one_line(recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str,
                                message: str) -> None:
    assert main(["video", str(recording), "--out", str(tmp_path / "clip.mp4"), "--size", size]) == 2
    assert capsys.readouterr().err == f"medviz: {message}\n"


def test_a_token_range_outside_the_recording_is_one_line(recording: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert video(recording, tmp_path / "clip.gif", "--token-range", "3:9") == 2
    assert capsys.readouterr().err == "medviz: token range '3:9' is not within this recording's tokens 0..4\n"
