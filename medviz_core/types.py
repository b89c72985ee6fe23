"""Frozen values that cross module boundaries: what the engine yields and what it was asked.

This module owns only data shapes (and GenerationParams' range checks, `check_methods`,
which checks a selection of METHODS, `source_key`, the one spelling of an analysis
source's key, and `token_range`, the one reading of a token range "A:B" or "N"). A base
module: it imports only errors.py and limits.py. It imports neither torch nor transformers,
so the server, the recorder and the tests can use it without a model.
Maps are float32 numpy arrays of shape (grid_h, grid_w) holding raw relevancy values
(docs/methods.md, docs/relevancy.md); normalisation for display happens later,
in `wire/` and the browser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from medviz_core.errors import RequestError
from medviz_core.limits import MAX_NEW_TOKENS

FloatMap = npt.NDArray[np.float32]

METHODS: tuple[str, ...] = (
    "raw",
    "layer_weighted",
    "head_importance",
    "flow",
    "rollout",
    "consensus",
)
"""Every relevancy method, in the order frames and the browser list them."""


def check_methods(methods: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Validate a method selection; None means all. Keeps METHODS order, drops duplicates."""
    if methods is None:
        return METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise RequestError(
            f"methods must be a non-empty subset of {', '.join(METHODS)}; got {list(methods)!r}"
        )
    return tuple(m for m in METHODS if m in methods)


CONSENSUS_INPUTS: tuple[str, ...] = ("layer_weighted", "head_importance", "flow", "rollout")
"""The maps the consensus averages (after min-max normalising each)."""

StopReason = Literal["eos", "end_of_turn", "max_tokens", "cancelled", "error"]

SourceKind = Literal["session", "recording"]
"""What an analysis reads: a live session's frames so far, or a recording."""


def source_key(kind: SourceKind, name: str) -> str:
    """The key an analysis source's jobs are cached and routed under: "session:<id>" or "recording:<name>"."""
    return f"{kind}:{name}"


TOKEN_RANGE = re.compile(r"\s*(-?\d+)?\s*(:?)\s*(-?\d+)?\s*")


class TokenRangeError(ValueError):
    """A token range that cannot be read (`outside` False) or that picks tokens outside the recording's (True);
    each command words its own message."""

    def __init__(self, outside: bool) -> None:
        super().__init__("outside the tokens" if outside else "not A:B or N")
        self.outside = outside


def token_range(spec: str, count: int) -> range:
    """"A:B" (both included; either side may be left out, not both) or "N" -> the indices it picks of `count`
    tokens, as `medviz faithfulness --tokens` and `medviz video --token-range` read it. TokenRangeError when it
    is not that, or when it picks nothing within 0..count-1 (B before A included)."""
    found = TOKEN_RANGE.fullmatch(spec)
    if found is None or (not found[2] and found[3] is not None) or (found[1] is None and
                                                                    (found[3] is None or not found[2])):
        raise TokenRangeError(outside=False)
    first = int(found[1]) if found[1] is not None else 0
    last = (int(found[3]) if found[3] is not None else count - 1) if found[2] else first
    if not 0 <= first <= last < count:
        raise TokenRangeError(outside=True)
    return range(first, last + 1)

ZONES: tuple[str, ...] = (
    "right upper",
    "central upper",
    "left upper",
    "right middle",
    "central middle",
    "left middle",
    "right lower",
    "central lower",
    "left lower",
)
"""Zone names on a 3 x 3 grid in radiological convention: the patient's right is the image's left."""


@dataclass(frozen=True)
class Region:
    """One high-attention region of the consensus map, in normalised image coordinates (0..1)."""

    polygon: tuple[tuple[float, float], ...]  # (x, y) vertices, origin top-left
    box: tuple[float, float, float, float]  # (x, y, width, height)
    mass: float  # share of the map's total mass inside the region
    zone: str  # one of ZONES, from the mass-weighted centre


@dataclass(frozen=True)
class StepStats:
    """The statistics of docs/relevancy.md on one image's map of one step (image_mass is on the Step)."""

    entropy_bits: float  # entropy of the normalised consensus map, in bits
    entropy_norm: float  # entropy_bits / log2(N)
    peak: tuple[int, int]  # (row, col) of the consensus maximum
    peak_zone: str
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class ImageLayout:
    """Where the image tokens are in the prompt and how they map onto the image grid.

    With several images, `positions` holds every block in prompt order and `blocks`
    says where each image's block starts and ends within it.
    """

    positions: tuple[int, ...]  # absolute sequence positions, raster order, block after block
    grid: tuple[int, int]  # (grid_h, grid_w)
    image_token_id: int

    @property
    def blocks(self) -> tuple[tuple[int, ...], ...]:
        size = self.grid[0] * self.grid[1]
        return tuple(self.positions[i : i + size] for i in range(0, len(self.positions), size))


STAND_IN_NOTE = ("Demo model: untrained vision — the heatmaps show the mechanics of attention, not medicine; "
                 "the text is not a report.")
"""What every view and export of a stand-in model's session says (web/js/format.js holds the same words)."""

REAL_MODEL_NOTE = "Model attention, not a diagnosis."
"""The smaller standing note for a real model."""


def is_stand_in(model_name: str) -> bool:
    """Whether a model name, as models/load.py writes it, is one of the offline stand-ins.

    models/load.py names its stand-ins by their ref kind: `tiny[?...]`, `demo[?...]` and
    `random:<shape>[?...]` (random or untrained weights: their maps show how attention is
    computed, not medicine); a folder or hub id (a real model) is named by its path or id.
    The start frame states the answer (`ModelFacts.stand_in`); this reads it off the name
    for recordings made before the field existed.
    """
    base = model_name.partition("?")[0]
    return base in ("tiny", "demo") or base.startswith("random:")


@dataclass(frozen=True)
class ModelFacts:
    """What a viewer needs to know about the model behind a session.

    `stand_in`: an offline stand-in (`is_stand_in`), whose views carry STAND_IN_NOTE.
    """

    name: str
    layers: int
    heads: int
    kv_heads: int
    grid: tuple[int, int]
    image_token_id: int
    sliding_window: int | None
    full_attention_layers: tuple[int, ...]
    device: str
    dtype: str
    stand_in: bool


MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 5.0
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 0.01, 10.0
"""Sampling bounds that keep every logit finite: logits are float32, so a temperature or penalty of
1e-40 divides them to inf and torch's sampler fails ("probability tensor contains inf/nan"); at 0.01
both together scale a logit by 1e4 at most."""
SEED_RANGE = (-(2**63), 2**64 - 1)
"""What torch's generator takes as a seed (beyond it: "Overflow when unpacking long long")."""


@dataclass(frozen=True)
class GenerationParams:
    """How a run samples, checked when made (RequestError naming the bound and the value).

    The one definition of the sampling parameters: the browser's form, the start frame, the
    engine and recordings all carry this object. temperature 0 means greedy.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for ok, message in self._checks():
            if not ok:
                raise RequestError(message)
        for name in ("temperature", "top_p", "repetition_penalty"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def _checks(self) -> list[tuple[bool, str]]:
        def whole(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def number(value: object) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        n, t, p, k, r, seed = (self.max_new_tokens, self.temperature, self.top_p, self.top_k,
                               self.repetition_penalty, self.seed)
        return [
            (whole(n) and 1 <= n <= MAX_NEW_TOKENS,
             f"max_new_tokens must be an integer in 1..{MAX_NEW_TOKENS}; got {n!r}"),
            (number(t) and (t == 0.0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE),
             f"temperature must be 0 (greedy) or in {MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g}; got {t!r}"),
            (number(p) and 0.0 < p <= 1.0, f"top_p must be in (0, 1]; got {p!r}"),
            (whole(k) and k >= 0, f"top_k must be an integer >= 0 (0 = off); got {k!r}"),
            (number(r) and MIN_REPETITION_PENALTY <= r <= MAX_REPETITION_PENALTY,
             f"repetition_penalty must be in {MIN_REPETITION_PENALTY:g}..{MAX_REPETITION_PENALTY:g}; got {r!r}"),
            (seed is None or (whole(seed) and SEED_RANGE[0] <= seed <= SEED_RANGE[1]),
             f"seed must be an integer in -2**63..2**64-1 or None; got {seed!r}"),
        ]


@dataclass(frozen=True)
class PromptImage:
    """One image of a study as it went into the processor."""

    label: str  # e.g. "PA", "lateral", "prior"; "" when not given
    png: bytes  # the RGB image exactly as it went into the processor
    size: tuple[int, int]  # (width, height)
    positions: tuple[int, ...]  # its image-token positions


@dataclass(frozen=True)
class Prompt:
    """The exact model inputs of a run, as the processor produced them."""

    token_ids: tuple[int, ...]
    layout: ImageLayout
    question: str | None  # None: the full report prompt
    images: tuple[PromptImage, ...]  # every image, in prompt order (one or more)
    preset: str = "medviz"  # the prompt preset (prompts.PRESETS) the texts came from
    token_texts: tuple[str, ...] = ()  # each position's text ("" for image tokens), for what a token read
    primer: str = ""  # the answer's first words as the template primes them ("Findings: The" on demo)


@dataclass(frozen=True)
class ImageFocus:
    """One image's maps and statistics for one token."""

    label: str
    maps: Mapping[str, FloatMap]  # method name -> (grid_h, grid_w) raw values
    stats: StepStats
    share: float  # this image's share of the token's attention (mean over layers); the shares sum to image_mass


@dataclass(frozen=True)
class ContextLink:
    """One text position a token attended to: its absolute position and mean_l m[l][j] (docs/methods.md)."""

    position: int
    value: float


@dataclass(frozen=True)
class Step:
    """One generated token with everything the viewers show for it."""

    index: int  # 0 for the first generated token
    token_id: int
    text: str  # the text this token adds (may be "" while a UTF-8 sequence is incomplete)
    position: int  # the query position whose logits produced this token
    images: tuple[ImageFocus, ...]  # every image's maps and statistics, in prompt order (one or more)
    image_mass: float  # the share of this token's attention on all images (mean over layers)
    model_ms: float  # forward pass time that produced this token's logits
    maps_ms: float  # relevancy + statistics time for this token
    layers_seeing_image: int  # layers whose attention window still covers every image token
    is_special: bool = False  # EOS / end_of_turn tokens are yielded too, then the stream stops
    context: tuple[ContextLink, ...] = ()  # the text positions it read most, largest first (at most 8)
    sink: float = 0.0  # mean_l m[l][0]: the share of its attention on <bos>, the attention sink

    @property
    def maps(self) -> Mapping[str, FloatMap]:
        """The first image's maps (the only image's, in a one-image run)."""
        return self.images[0].maps

    @property
    def stats(self) -> StepStats:
        """The first image's statistics."""
        return self.images[0].stats


@dataclass(frozen=True)
class StreamEnd:
    """Why and how a stream ended; `engine.stream` returns it (StopIteration.value)."""

    reason: StopReason
    tokens: int
    text: str
    prefill_ms: float
    total_ms: float
    message: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
