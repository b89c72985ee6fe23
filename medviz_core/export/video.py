"""A recording as a video for slides: an H.264 MP4, or an animated GIF or WebP, chosen by the output's suffix.

Owns: `VideoOptions` (method, size, speed or frame rate, token range) and their one-line `VideoError`s,
`parse_size`, `plan_video` (a recording read and checked against the options: the tokens shown and how many
frames each lasts: the recording's own gap to the next token at `speed`, at least one frame, or one token per
frame at `fps`) and `write_video`: the frames (export/video_frames.py) encoded as H.264 by the ffmpeg that
imageio-ffmpeg's wheel carries (yuv420p, even sides, `+faststart`, so PowerPoint, Keynote and browsers play
it; bit-exact flags and a fixed thread count, so one recording and one set of options give the same bytes
every time; ffmpeg dies with the process that feeds it: `dies_with_parent`), or as GIF / WebP by Pillow. The
file appears whole or not at all (written beside it, then renamed). Does not own what a frame shows
(video_frames.py), the command line (server/cli/video.py) or the server's renders (server/teaching/videos.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from medviz_core.errors import MedvizError, VideoError
from medviz_core.export.overlay import RGBImage
from medviz_core.export.video_frames import FramePainter
from medviz_core.recording.file import read_recording
from medviz_core.types import TokenRangeError, token_range
from medviz_core.wire.server_frames import StartFrame, StepFrame

FORMATS = {".mp4": "H.264 MP4", ".gif": "animated GIF", ".webp": "animated WebP"}
"""Output suffixes and what each writes."""

DEFAULT_SIZE = (1280, 720)
SMALLEST, LARGEST = (160, 120), (3840, 2160)
TIMED_FPS = 25
"""Frames a second of a video timed by the recording (`speed`): a token lasts a whole number of them."""

MAX_FPS = 60
SPEEDS = (0.05, 64.0)
ANIMATED_PIXELS = 250_000_000
"""A GIF or WebP is assembled in memory: its frames x width x height at most this (about 270 tokens at 1280x720)."""

ENCODER_THREADS = 2
"""x264's output depends on its thread count: one fixed count, so every render of the same options matches."""

CRF = 20  # x264's constant quality: 20 keeps the report's small text sharp

Progress = Callable[[int, int], None]
"""Called with (tokens drawn, tokens in all) as a video is made."""


@dataclass(frozen=True)
class VideoOptions:
    """How to make a video: the map's method, the picture's size, and its timing: the recording's at `speed`
    (1 = as recorded), or one token per frame at `fps` frames a second when `fps` is set; `tokens` "A:B" (both
    included) or None for all."""

    method: str = "consensus"
    size: tuple[int, int] = DEFAULT_SIZE
    speed: float = 1.0
    fps: int | None = None
    tokens: str | None = None

    def check(self) -> VideoOptions:
        """The options, or VideoError naming the one that is out of range."""
        check_size(self.size)
        if self.fps is not None and not 1 <= self.fps <= MAX_FPS:
            raise VideoError(f"fps must be a whole number from 1 to {MAX_FPS}; got {self.fps}")
        if not SPEEDS[0] <= self.speed <= SPEEDS[1]:
            raise VideoError(f"speed must be from {SPEEDS[0]:g} to {SPEEDS[1]:g} (1 = as recorded); got {self.speed:g}")
        return self


def parse_size(spec: str) -> tuple[int, int]:
    """"WxH" -> (W, H), checked (`check_size`); VideoError otherwise."""
    found = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", spec)
    if found is None:
        raise VideoError(f"size must be WxH in pixels, e.g. 1280x720; got {spec!r}")
    return check_size((int(found[1]), int(found[2])))


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """VideoError unless both sides are even (H.264 in yuv420p needs it) and within SMALLEST..LARGEST."""
    width, height = size
    if not (SMALLEST[0] <= width <= LARGEST[0] and SMALLEST[1] <= height <= LARGEST[1]) or width % 2 or height % 2:
        raise VideoError(f"size must have even sides from {SMALLEST[0]}x{SMALLEST[1]} to {LARGEST[0]}x{LARGEST[1]}; "
                         f"got {width}x{height}")
    return size


def format_of(out: Path) -> str:
    """The output's suffix, lower-cased, if it is one of FORMATS; VideoError naming them otherwise."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(f"{s} ({what})" for s, what in FORMATS.items())
        raise VideoError(f"{out.name!r}: a video is {known}; got {f'{suffix!r}' if suffix else 'no suffix'}")
    return suffix


@dataclass(frozen=True)
class VideoPlan:
    """A recording checked against the options and an output: the tokens shown and how many frames each lasts."""

    start: StartFrame
    steps: tuple[StepFrame, ...]  # every step of the recording, index order
    shown: range  # the indices of the tokens shown
    counts: tuple[int, ...]  # frames per shown token
    rate: int  # frames a second
    options: VideoOptions
    format: str  # a suffix of FORMATS

    @property
    def frames(self) -> int:
        return sum(self.counts)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def plan_video(recording: Path, out: Path, options: VideoOptions) -> VideoPlan:
    """Check that a recording can be shown as asked, before any frame is drawn: VideoError for an unknown suffix,
    bad options, a recording without tokens, a method it lacks, a token range outside it, an animation too large
    to assemble or a missing folder (MedvizError if the recording is missing or not one)."""
    suffix = format_of(out)
    options.check()
    read = read_recording(recording)
    start, name = read.start, recording.stem
    steps = tuple(f.frame for f in read.steps if isinstance(f.frame, StepFrame))
    if start is None or not steps:
        raise VideoError(f"recording {name!r} has no tokens: there is nothing to show")
    if options.method not in start.methods:
        raise VideoError(f"method {options.method!r} is not in recording {name!r}; it has {', '.join(start.methods)}")
    shown = shown_tokens(options.tokens, len(steps))
    width, height = options.size
    if suffix != ".mp4" and len(shown) * width * height > ANIMATED_PIXELS:
        raise VideoError(f"an {FORMATS[suffix]} of {len(shown)} tokens at {width}x{height} is too large to assemble "
                         f"(at most {ANIMATED_PIXELS // 1_000_000} million pixels in all): choose a token range, a "
                         "smaller size, or .mp4")
    if not out.parent.is_dir():
        raise VideoError(f"folder {str(out.parent)!r} does not exist")
    if options.fps is not None:
        return VideoPlan(start, steps, shown, (1,) * len(shown), options.fps, options, suffix)
    end_ms = read.end.total_ms if read.end is not None else None
    return VideoPlan(start, steps, shown, frame_counts(steps, shown, end_ms, options.speed), TIMED_FPS, options,
                     suffix)


def shown_tokens(spec: str | None, count: int) -> range:
    """The tokens a video shows: `types.token_range` of "A:B" or "N"; None: all of 0..count-1."""
    if spec is None:
        return range(count)
    try:
        return token_range(spec, count)
    except TokenRangeError as error:
        if error.outside:
            raise VideoError(f"token range {spec!r} is not within this recording's tokens 0..{count - 1}") from None
        raise VideoError(f"token range must be A:B (both included) or N, whole numbers; got {spec!r}") from None


def frame_counts(steps: tuple[StepFrame, ...], shown: range, end_ms: float | None, speed: float) -> tuple[int, ...]:
    """Frames each shown token lasts at TIMED_FPS: from its time to the next token's (the last: to the end
    frame's total time, when the recording has one), divided by `speed`; at least one frame each, counted on
    the running total so rounding never adds up."""
    times = [steps[i].t_ms for i in shown]
    after = steps[shown[-1] + 1].t_ms if shown[-1] + 1 < len(steps) else end_ms
    ends = [*times[1:], max(times[-1], after if after is not None else times[-1])]
    counts, written = [], 0
    for end in ends:
        count = max(1, round((end - times[0]) / 1000 / speed * TIMED_FPS) - written)
        counts.append(count)
        written += count
    return tuple(counts)


@dataclass(frozen=True)
class VideoResult:
    path: Path
    format: str
    tokens: int
    frames: int
    seconds: float


def write_video(plan: VideoPlan, out: Path, progress: Progress | None = None) -> VideoResult:
    """Make the planned video at `out` (`plan_video` checked them). MedvizError if the encoder or the disk
    fails; nothing is left at `out` then."""
    partial = out.with_name(f".{out.stem}.partial{plan.format}")
    try:
        frames = _frames(plan, progress)
        if plan.format == ".mp4":
            _write_mp4(frames, plan, partial)
        else:
            _write_animated(frames, plan, partial)
        os.replace(partial, out)
    except OSError as error:
        raise MedvizError(f"the video could not be written to {str(out)!r}: {(error.strerror or str(error)).lower()}"
                          ) from error
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    frames_written = plan.frames if plan.format == ".mp4" else len(plan.shown)
    return VideoResult(out, plan.format, len(plan.shown), frames_written, plan.seconds)


def make_video(recording: Path, out: Path, options: VideoOptions, progress: Progress | None = None) -> VideoResult:
    """`plan_video`, then `write_video`."""
    return write_video(plan_video(recording, out, options), out, progress)


def _frames(plan: VideoPlan, progress: Progress | None) -> Iterator[tuple[RGBImage, int]]:
    """Each shown token's picture and how many frames it lasts, drawn as they are asked for."""
    painter = FramePainter(plan.start, plan.steps, plan.options.method, plan.options.size)
    for done, (index, count) in enumerate(zip(plan.shown, plan.counts), start=1):
        yield painter.frame(index), count
        if progress is not None:
            progress(done, len(plan.shown))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` (Linux) after which the child is killed (SIGKILL, which also ends a stopped process) when the
    thread that started it ends, its process killed included, and which exits at once if that process is already
    gone; None elsewhere. ffmpeg gets it (nothing else feeds its stdin), and so does a server's render (its child)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(1)

    return set_death_signal


def ffmpeg_command(size: tuple[int, int], rate: int, out: Path) -> list[str]:
    """ffmpeg reading raw RGB frames on stdin and writing H.264 in MP4 for every slide program: yuv420p, its
    index first (+faststart), no time stamps or version strings in the file (bit-exact)."""
    from imageio_ffmpeg import get_ffmpeg_exe

    return [get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-framerate", str(rate),
            "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", "medium", "-crf", str(CRF), "-pix_fmt", "yuv420p",
            "-threads", str(ENCODER_THREADS), "-movflags", "+faststart", "-map_metadata", "-1",
            "-fflags", "+bitexact", "-flags:v", "+bitexact", "-f", "mp4", "-y", str(out)]


def _write_mp4(frames: Iterator[tuple[RGBImage, int]], plan: VideoPlan, out: Path) -> None:
    with tempfile.TemporaryFile() as said:
        process = subprocess.Popen(ffmpeg_command(plan.options.size, plan.rate, out), stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=said, preexec_fn=dies_with_parent())
        assert process.stdin is not None
        try:
            for picture, count in frames:
                data = picture.tobytes()
                for _ in range(count):
                    process.stdin.write(data)
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped: its exit code and words say why
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.wait() != 0:
            said.seek(0)
            lines = said.read().decode("utf-8", "replace").strip().splitlines()
            raise MedvizError(f"ffmpeg could not encode the video: {lines[-1] if lines else process.returncode}")


def _write_animated(frames: Iterator[tuple[RGBImage, int]], plan: VideoPlan, out: Path) -> None:
    """One picture per token, lasting its frames (GIF keeps hundredths of a second), looping forever."""
    pictures = (Image.fromarray(picture) for picture, _ in frames)
    first = next(pictures)
    durations = [round(count * 1000 / plan.rate) for count in plan.counts]
    if plan.format == ".gif":
        first.save(out, format="GIF", save_all=True, append_images=pictures, duration=durations, loop=0)
    else:
        first.save(out, format="WEBP", save_all=True, append_images=list(pictures), duration=durations, loop=0,
                   quality=80, method=4)
