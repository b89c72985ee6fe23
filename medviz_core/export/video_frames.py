"""One picture per token of a recording, as the recording player shows it: the frames of a video for slides.

Owns: a frame's layout at a size and its drawing with Pillow (in the font that ships with Pillow): a header
with the token's number and text and the method; the study's images side by side, each with the method's
heatmap and regions (`overlay.render_overlay`, the picture a DICOM export's Secondary Capture holds: one
Python picture of a token), the regions' "zone · mass" labels, R and L on a frontal view and a colour bar
with the map's range in one unit; beside them the report written so far with the current token marked;
below, the model's note (types.STAND_IN_NOTE in amber for a stand-in, else REAL_MODEL_NOTE: attention, not
a diagnosis). Does not own which tokens, their timing or the encoding (export/video.py), nor the frame
format (wire/).
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medviz_core.export.overlay import VIRIDIS, RGBImage, render_overlay
from medviz_core.imaging.study import VIEW_LABELS
from medviz_core.maps.regions import find_regions
from medviz_core.types import REAL_MODEL_NOTE, STAND_IN_NOTE, Region
from medviz_core.wire.server_frames import ImageMaps, StartFrame, StepFrame

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Colour = tuple[int, int, int]

BACKGROUND: Colour = (5, 7, 10)
PANEL: Colour = (10, 13, 18)
TEXT: Colour = (230, 237, 245)
DIM: Colour = (141, 156, 176)
AMBER: Colour = (255, 214, 102)  # the stand-in's note, and the current token's mark
ON_AMBER: Colour = (10, 13, 18)
LABEL_BACK: Colour = (8, 12, 18)

METHOD_LABELS = {"raw": "Raw", "layer_weighted": "Layer-weighted", "head_importance": "Head importance",
                 "flow": "Flow", "rollout": "Rollout", "consensus": "Consensus", "gradient": "Gradient"}
"""The methods as the browser names them (web/js/format.js METHOD_LABELS)."""

PLAIN = {"—": "-", "–": "-", "−": "-", "×": "x", "→": ">", "←": "<", "↵": " ", "\t": " ", "\r": " ", "\u00a0": " "}
"""Characters the font lacks, written with one it has (one for one, so text offsets stay put)."""


@cache
def font(size: int) -> Font:
    return ImageFont.load_default(size=size)


@cache
def _has_glyph(char: str) -> bool:
    """Whether Pillow's font draws `char` (its missing-glyph box differs from every real glyph)."""
    probe = font(12)
    return bytes(probe.getmask(char)) != bytes(probe.getmask("\ue000")) or char in " \n"


def typeable(text: str) -> str:
    """`text` with each character the font cannot draw replaced by one it can: PLAIN, else the letter without
    its accent (é -> e), else "?". One character for one."""
    out = []
    for char in text:
        if _has_glyph(char):
            out.append(char)
        elif char in PLAIN:
            out.append(PLAIN[char])
        else:
            base = unicodedata.normalize("NFKD", char)[:1]
            out.append(base if base and base.isascii() and _has_glyph(base) else "?")
    return "".join(out)


def one_unit(lo: float, hi: float) -> tuple[str, str, int]:
    """The two ends of a colour bar in one unit, as web/js/format.js inOneUnit writes them: (lo, hi, exponent),
    both scaled by 10**-exponent; exponent 0 when the larger lies in 0.001..999, three significant digits on it."""
    top = max(abs(lo), abs(hi))
    if not (top > 0 and math.isfinite(top)):
        return ("0" if lo == 0 else f"{lo:g}", "0" if hi == 0 else f"{hi:g}", 0)
    magnitude = math.floor(math.log10(top))
    exponent = 0 if -3 <= magnitude <= 2 else magnitude
    digits = max(0, 2 - (magnitude - exponent))
    scale = 10.0 ** -exponent
    return f"{lo * scale:.{digits}f}", f"{hi * scale:.{digits}f}", exponent


def is_lateral(label: str) -> bool:
    """A lateral view's label (imaging/study.py VIEW_LABELS, or the user's "lateral" / "lat"): no R/L marks."""
    word = VIEW_LABELS.get(label.strip().upper(), label.strip().lower())
    return word in ("lateral", "lat")


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


def fit(box: Box, width: int, height: int) -> Box:
    """The largest rectangle of the picture's aspect centred in `box` (web/js/views/stage.js fitRect)."""
    scale = min(box.w / width, box.h / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return Box(box.x + (box.w - w) // 2, box.y + (box.h - h) // 2, w, h)


@dataclass(frozen=True)
class Layout:
    """Where everything of a frame goes at one size, and the font sizes: computed once per video."""

    size: tuple[int, int]
    pad: int
    header: Box
    panes: tuple[Box, ...]  # one per image: its title, picture and colour bar
    pictures: tuple[Box, ...]  # each image's picture, its aspect kept, inside its pane
    report: Box
    footer: Box
    note_lines: tuple[str, ...]
    big: int  # font sizes in pixels
    text: int
    small: int

    @staticmethod
    def of(size: tuple[int, int], images: Sequence[tuple[int, int]], note: str) -> Layout:
        width, height = size
        s = min(width / 1280, height / 720)
        pad, big = max(4, round(12 * s)), max(9, round(22 * s))
        text, small = max(8, round(17 * s)), max(8, round(14 * s))
        note_lines = tuple(wrap_lines(note, width - 2 * pad, font(small).getlength))
        footer_h = len(note_lines) * line_height(small) + pad
        header = Box(0, 0, width, line_height(big) + pad)
        footer = Box(0, height - footer_h, width, footer_h)
        body_y, body_h = header.h + pad, footer.y - header.h - 2 * pad
        report_w = round(width * 0.34)
        report = Box(width - report_w - pad, body_y, report_w, body_h)
        area_w = report.x - 2 * pad
        pane_w = (area_w - (len(images) - 1) * pad) // len(images)
        panes = tuple(Box(pad + k * (pane_w + pad), body_y, pane_w, body_h) for k in range(len(images)))
        title_h, bar_h = line_height(small), colour_bar_height(small)
        pictures = tuple(fit(Box(p.x, p.y + title_h, p.w, max(1, p.h - title_h - bar_h)), w, h)
                         for p, (w, h) in zip(panes, images))
        return Layout(size, pad, header, panes, pictures, report, footer, note_lines, big, text, small)


def line_height(size: int) -> int:
    return round(size * 1.35)


def colour_bar_height(small: int) -> int:
    return max(6, round(small * 0.7)) + line_height(small) + 4


def wrap_lines(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    return [text[a:b].rstrip() for a, b in wrap_spans(text, width, measure)]


WORD = re.compile(r"\S+\s*|\s+")


def wrap_spans(text: str, width: float, measure: Callable[[str], float]) -> list[tuple[int, int]]:
    """Lines of `text` no wider than `width`, as (start, end) offsets: broken after spaces, at newlines, and
    inside a word longer than a line."""
    lines: list[tuple[int, int]] = []
    offset = 0
    for paragraph in text.split("\n"):
        start = end = offset
        for match in WORD.finditer(paragraph):
            a, b = offset + match.start(), offset + match.end()
            if end > start and measure(text[start:b].rstrip()) > width:
                lines.append((start, end))
                start = a
            while measure(text[start:b].rstrip()) > width and b - start > 1:  # a word longer than a line
                cut = start + 1
                while cut < b and measure(text[start : cut + 1]) <= width:
                    cut += 1
                lines.append((start, cut))
                start = cut
            end = b
        lines.append((start, end))
        offset += len(paragraph) + 1
    return lines


class FramePainter:
    """The frames of one recording at one size and method: the layout and the X-rays scaled to it are made
    once; `frame(i)` draws token i (an index into `steps`) as an (H, W, 3) uint8 RGB picture."""

    def __init__(self, start: StartFrame, steps: Sequence[StepFrame], method: str, size: tuple[int, int]) -> None:
        self.start, self.steps, self.method = start, steps, method
        note = STAND_IN_NOTE if start.model.stand_in else REAL_MODEL_NOTE
        self.layout = Layout.of(size, [image.size for image in start.images], typeable(note))
        self.pictures = [_scaled(image.png, box) for image, box in zip(start.images, self.layout.pictures)]
        self.titles = [typeable(image.label or f"Image {k + 1}") for k, image in enumerate(start.images)]
        self.measure = cache(font(self.layout.text).getlength)

    def frame(self, index: int) -> RGBImage:
        canvas = Image.new("RGB", self.layout.size, BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        step = self.steps[index]
        self._header(draw, step)
        for k, maps in enumerate(step.images):
            self._pane(canvas, draw, k, maps, several=len(step.images) > 1)
        self._report(draw, index)
        self._footer(draw)
        picture: RGBImage = np.asarray(canvas, dtype=np.uint8)
        return picture

    def _header(self, draw: ImageDraw.ImageDraw, step: StepFrame) -> None:
        layout, big = self.layout, font(self.layout.big)
        draw.rectangle((0, 0, layout.header.w, layout.header.h), fill=PANEL)
        shown = "end" if step.is_special else visible_token(step.text)
        shown = shown if len(shown) <= 32 else shown[:31] + "…"
        left = typeable(f"#{step.index} \u201c{shown}\u201d · {METHOD_LABELS.get(self.method, self.method)}")
        right = typeable(f"token {step.index + 1} / {len(self.steps)} · model {self.start.model.name}")
        y = layout.pad // 2
        draw.text((layout.pad, y), left, font=big, fill=TEXT)
        right_w = font(layout.small).getlength(right)
        if big.getlength(left) + right_w + 3 * layout.pad <= layout.size[0]:
            draw.text((layout.size[0] - layout.pad - right_w, y + (layout.big - layout.small)), right,
                      font=font(layout.small), fill=DIM)

    def _pane(self, canvas: Image.Image, draw: ImageDraw.ImageDraw, k: int, maps: ImageMaps, several: bool) -> None:
        layout, small = self.layout, font(self.layout.small)
        box = layout.pictures[k]
        title = self.titles[k] + (f" · {round(maps.share * 100)}% of attention" if several else "")
        draw.text((box.x, box.y - line_height(layout.small)), title, font=small, fill=DIM)  # just above its picture
        grid = self.start.model.grid
        values = maps.values(self.method, grid)
        regions = maps.stats.regions if self.method == "consensus" else find_regions(values, self.start.images[k].size)
        canvas.paste(Image.fromarray(render_overlay(self.pictures[k], values, regions)), (box.x, box.y))
        scale = layout.small / 14
        draw_region_labels(draw, regions, box, scale)
        if not is_lateral(self.start.images[k].label):
            draw_side_marks(draw, box, scale)
        quant = maps.maps[self.method]
        draw_colour_bar(draw, Box(box.x, box.y + box.h + 4, box.w, colour_bar_height(layout.small) - 4),
                        quant.lo, quant.hi, layout.small)

    def _report(self, draw: ImageDraw.ImageDraw, index: int) -> None:
        layout, box = self.layout, self.layout.report
        draw.rectangle((box.x, box.y, box.x + box.w, box.y + box.h), fill=PANEL)
        inner = Box(box.x + layout.pad, box.y + layout.pad, box.w - 2 * layout.pad, box.h - 2 * layout.pad)
        question = self.start.question
        heading = typeable("Report" if question is None else f"Question: {question}")
        small = font(layout.small)
        heading_lines = wrap_lines(heading, inner.w, small.getlength)[:2]
        y = inner.y
        for line in heading_lines:
            draw.text((inner.x, y), line, font=small, fill=DIM)
            y += line_height(layout.small)
        y += layout.pad // 2
        before = typeable(self.start.primer + "".join(shown_text(s) for s in self.steps[:index]))
        text = before + typeable(shown_text(self.steps[index]))
        spans = wrap_spans(text, inner.w, self.measure)[-max(1, (inner.y + inner.h - y) // line_height(layout.text)):]
        mark = (len(before), len(text))
        marked = [max(a, mark[0]) < min(b, mark[1]) for a, b in spans]
        for number, (a, b) in enumerate(spans):  # the newest lines: the current token is the last one written
            at = (max(a, mark[0]), min(b, mark[1])) if marked[number] else None
            if number == len(spans) - 1 and not any(marked):  # a newline or empty token: marked at the end
                at = (b, b)
            self._report_line(draw, text, (a, b), at, inner.x, y)
            y += line_height(layout.text)

    def _report_line(self, draw: ImageDraw.ImageDraw, text: str, line: tuple[int, int], mark: tuple[int, int] | None,
                     x: int, y: int) -> None:
        """One line of the report; `mark`: the current token's part of it, drawn dark on amber."""
        a, b = line
        regular = font(self.layout.text)
        if mark is not None:
            x0 = x + self.measure(text[a : mark[0]])
            x1 = max(x + self.measure(text[a : mark[1]]), x0 + self.layout.text * 0.4)
            draw.rectangle((x0 - 2, y - 1, x1 + 2, y + line_height(self.layout.text) - 2), fill=AMBER)
        draw.text((x, y), text[a:b], font=regular, fill=TEXT)
        if mark is not None and mark[0] < mark[1]:
            draw.text((x + self.measure(text[a : mark[0]]), y), text[mark[0] : mark[1]], font=regular, fill=ON_AMBER)

    def _footer(self, draw: ImageDraw.ImageDraw) -> None:
        layout = self.layout
        colour = AMBER if self.start.model.stand_in else DIM
        y = layout.footer.y
        for line in layout.note_lines:
            draw.text((layout.pad, y), line, font=font(layout.small), fill=colour)
            y += line_height(layout.small)


def shown_text(step: StepFrame) -> str:
    """A token as the report shows it: its text; an end-of-turn token as " [end]"."""
    return " [end]" if step.is_special else step.text


def visible_token(text: str) -> str:
    """A token's text made visible, as web/js/format.js visibleToken: whitespace as marks, empty as "(empty)"."""
    if text == "":
        return "(empty)"
    if text.isspace():
        return "".join("\\n" if c == "\n" else "·" for c in text)
    return text.replace("\n", "\\n")


def _scaled(png: bytes, box: Box) -> RGBImage:
    with Image.open(io.BytesIO(png)) as picture:
        scaled = picture.convert("RGB").resize((box.w, box.h), Image.Resampling.LANCZOS)
    return np.asarray(scaled, dtype=np.uint8).copy()


def draw_region_labels(draw: ImageDraw.ImageDraw, regions: Sequence[Region], box: Box, scale: float) -> None:
    """Each region's "zone · mass" label at the first of a few spots around its box that lies inside the
    picture and overlaps no label placed before (web/js/draw/overlay.js placeLabels); most mass first."""
    size = max(8, round(12 * scale))
    label_font, pad, h = font(size), 0.3 * size, 1.4 * size
    placed: list[tuple[float, float, float, float]] = []
    for region in regions:
        text = typeable(f"{region.zone} · {round(region.mass * 100)}%")
        w = label_font.getlength(text) + 2 * pad
        if w > box.w or h > box.h:
            continue
        bx, by = box.x + region.box[0] * box.w, box.y + region.box[1] * box.h
        bw, bh = region.box[2] * box.w, region.box[3] * box.h
        gap = 2 * scale
        for x0, y0 in ((bx, by - h - gap), (bx + 3 * scale, by + 3 * scale), (bx, by + bh + gap),
                       (bx + bw - w, by - h - gap), (bx + bw - w, by + bh + gap)):
            x = max(box.x, min(x0, box.x + box.w - w))
            y = max(box.y, min(y0, box.y + box.h - h))
            if all(x + w <= ox or ox + ow <= x or y + h <= oy or oy + oh <= y for ox, oy, ow, oh in placed):
                placed.append((x, y, w, h))
                draw.rectangle((x, y, x + w, y + h), fill=LABEL_BACK)
                draw.text((x + pad, y + h / 2), text, font=label_font, fill=TEXT, anchor="lm")
                break


def draw_side_marks(draw: ImageDraw.ImageDraw, box: Box, scale: float) -> None:
    """"R" on the picture's left edge, "L" on its right: the patient's sides on a frontal film."""
    marks = font(max(9, round(15 * scale)))
    y = box.y + box.h / 2
    for text, x, anchor in (("R", box.x + 8 * scale, "lm"), ("L", box.x + box.w - 8 * scale, "rm")):
        draw.text((x + 1, y + 1), text, font=marks, fill=(0, 0, 0), anchor=anchor)
        draw.text((x, y), text, font=marks, fill=(240, 244, 248), anchor=anchor)


def draw_colour_bar(draw: ImageDraw.ImageDraw, box: Box, lo: float, hi: float, small: int) -> None:
    """The palette from the map's lowest value to its highest, both written below it in one unit ("x10" with
    its exponent raised, when the values need one)."""
    bar_h = max(6, round(small * 0.7))
    columns = VIRIDIS[np.linspace(0, 255, max(1, box.w)).round().astype(np.int64)]
    for x, colour in enumerate(columns):
        draw.line((box.x + x, box.y, box.x + x, box.y + bar_h - 1), fill=tuple(int(c) for c in colour))
    low, high, exponent = one_unit(lo, hi)
    text_font, y = font(small), box.y + bar_h + 2
    draw.text((box.x, y), low, font=text_font, fill=DIM)
    unit = "" if exponent == 0 else " x10"
    raised = font(max(7, round(small * 0.7)))
    power = str(exponent) if exponent else ""
    width = text_font.getlength(high + unit) + (raised.getlength(power) if power else 0)
    right = box.x + box.w - width
    draw.text((right, y), high + unit, font=text_font, fill=DIM)
    if power:
        draw.text((right + text_font.getlength(high + unit), y - small * 0.25), power, font=raised, fill=DIM)
    middle = "attention (relevancy)"
    middle_w = text_font.getlength(middle)
    if text_font.getlength(low) + middle_w + width + 4 * small <= box.w:
        draw.text((box.x + (box.w - middle_w) / 2, y), middle, font=text_font, fill=DIM)
