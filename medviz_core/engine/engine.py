"""A loaded model ready to stream: `Engine`, what it knows about the model, and how a run starts.

Owns: `Engine` (model + processor + facts: layers, heads, grid, image token, EOS ids),
turning images (bytes, paths, RGB arrays) and a question into the model's exact inputs
(`prepare_images`, `inputs_for`, `layout_of`), and `stream`, which checks a request and
returns a `Run` (engine/run.py: the token loop, which reads the engine only through the public
surface its `RunEngine` protocol names). Also the compiled decode steps it keeps per length
bucket, and turning them off for good (`disable_compile`). Does not own loading models (models/load.py), decoding
image files (imaging/load.py), prompt texts (prompts.py) or the loop (engine/run.py). Knows nothing about HTTP or
frames. Generation is blocking torch code: callers run it on one worker thread.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from medviz_core.engine import capture as capture_module
from medviz_core.engine.api import ImageInput
from medviz_core.engine.compiled import CompiledDecoder, bucket
from medviz_core.engine.inputs import answer_primer, check_processor, model_inputs
from medviz_core.engine.run import Run
from medviz_core.errors import RequestError
from medviz_core.imaging.load import image_to_png, load_image
from medviz_core.limits import MAX_IMAGES
from medviz_core.maps.host_maps import FinisherMode, MapsProcess, MapsProcessError
from medviz_core.prompts import check_label, check_preset
from medviz_core.types import GenerationParams, ImageLayout, ModelFacts, Prompt, PromptImage, check_methods, is_stand_in


@dataclass(frozen=True)
class ModelHandle:
    """What models/load.py hands the engine."""

    model: Any
    processor: Any
    name: str
    suggested: GenerationParams = GenerationParams()  # defaults a UI should offer for this model


class Engine:
    """A loaded Gemma 3 image-text model ready to stream with attention maps."""

    def __init__(self, handle: ModelHandle, compile: bool = False) -> None:
        self.compile = compile  # decode steps through compiled.py (falls back to eager, with a note, if it fails)
        self._decoders: dict[tuple[int, int, bool], CompiledDecoder] = {}  # (length bucket, images, in graph)
        self.model = handle.model
        self.processor = handle.processor
        self.name = handle.name
        self.suggested = handle.suggested
        self.model.eval()
        check_processor(self.processor)
        self.primer = answer_primer(self.processor)  # the answer's first words, written by the template
        capture_module.attach(self.model)
        text = self.model.config.get_text_config()
        self.text_config: Any = text  # the decoder's config: layers and heads, what a KV cache is built from
        self.device = next(self.model.parameters()).device
        # Where each step's maps and statistics are computed (run._Finisher): on CUDA in a process of their own
        # while the device runs the next step; on the CPU inline, as the model's threads already fill the cores.
        self.finisher: FinisherMode = "process" if self.device.type == "cuda" else "inline"
        self._maps_process: MapsProcess | None = None
        if self.finisher == "process":
            self.maps_process_or_none()  # now, so its start-up is not on the first session's path
        # Compiled steps reduce the maps' rows inside the graph on CUDA (launches saved), after it on the CPU.
        self.reduce_in_graph = self.device.type == "cuda"
        self.dtype = next(self.model.parameters()).dtype
        self.image_token_id = int(self.model.config.image_token_id)
        tokens = int(getattr(self.model.config, "mm_tokens_per_image", 256))
        side = int(round(tokens**0.5))
        if side * side != tokens:
            raise RequestError(f"mm_tokens_per_image must be a square number; got {tokens}")
        self.grid = (side, side)
        self.eos_ids = _eos_ids(self.model, self.processor)
        self.end_of_turn_id = _token_id(self.processor, "<end_of_turn>")
        forward_parameters = inspect.signature(self.model.forward).parameters
        # The forward's KV cache argument: newer transformers renamed past_key_values= to cache=.
        self.cache_argument = "cache" if "cache" in forward_parameters else "past_key_values"
        self.facts = ModelFacts(
            name=self.name,
            layers=int(text.num_hidden_layers),
            heads=int(text.num_attention_heads),
            kv_heads=int(text.num_key_value_heads),
            grid=self.grid,
            image_token_id=self.image_token_id,
            sliding_window=getattr(text, "sliding_window", None),
            full_attention_layers=tuple(
                i for i, kind in enumerate(getattr(text, "layer_types", []) or []) if kind == "full_attention"
            ),
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            stand_in=is_stand_in(self.name),
        )

    def maps_process(self) -> MapsProcess:
        """The engine's maps process (maps/host_maps.py), started on first use and again if it died; MapsProcessError
        if it cannot start."""
        if self._maps_process is not None and not self._maps_process.alive:
            self._maps_process.close()
            self._maps_process = None
        if self._maps_process is None:
            self._maps_process = MapsProcess()
        return self._maps_process

    def maps_process_or_none(self) -> MapsProcess | None:
        """The maps process; None, with a one-line note, and the engine's finisher set to inline, if it cannot start."""
        try:
            return self.maps_process()
        except MapsProcessError as error:
            print(f"[medviz] {error}; each step's maps are computed inline", file=sys.stderr, flush=True)
            self.finisher = "inline"
            return None

    def close(self) -> None:
        """Stop the maps process, if one was started (it also ends by itself when this process does)."""
        if self._maps_process is not None:
            self._maps_process.close()
            self._maps_process = None

    def disable_compile(self) -> None:
        """Decode eagerly from now on, in this run and every later one (a compiled step could not be built)."""
        self.compile = False

    def compiled_decoder(self, length: int, image_tokens: int) -> CompiledDecoder:
        """The compiled decode step for sequences up to `length` tokens (rounded up to a bucket), built once."""
        key = (bucket(length), image_tokens, self.reduce_in_graph)
        if key not in self._decoders:
            self._decoders[key] = CompiledDecoder(self, key[0], image_tokens, reduce_in_graph=self.reduce_in_graph)
        return self._decoders[key]

    def prepare_image(self, image: ImageInput) -> np.ndarray:
        """File bytes, a file path or an RGB uint8 array -> the RGB array the processor gets."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            return load_image(bytes(image))
        if isinstance(image, (str, os.PathLike)):
            return load_image(read_image_file(image))
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise RequestError(f"image array must be uint8 (H, W, 3); got {array.dtype} {array.shape}")
        return np.ascontiguousarray(array)

    def prepare_images(self, image: ImageInput | Sequence[ImageInput], labels: Sequence[str] = ()) -> list[np.ndarray]:
        """One image or a study's images (up to MAX_IMAGES) -> RGB arrays, with labels checked."""
        images: list[ImageInput] = list(image) if isinstance(image, (list, tuple)) else [image]  # type: ignore[list-item]
        if not 1 <= len(images) <= MAX_IMAGES:
            raise RequestError(f"a session takes 1..{MAX_IMAGES} images; got {len(images)}")
        if len(labels) > len(images):
            raise RequestError(f"labels must be at most one per image; got {len(labels)} for {len(images)} image(s)")
        for label in labels:
            check_label(label)
        return [self.prepare_image(item) for item in images]

    def inputs_for(
        self,
        image: ImageInput | Sequence[ImageInput],
        question: str | None = None,
        labels: Sequence[str] = (),
        preset: str | None = None,
    ) -> Any:
        """The exact processor outputs `stream` feeds the model (on the model's device).

        They are the ids and pixels of `processor.apply_chat_template(messages,
        add_generation_prompt=True, tokenize=True, return_dict=True)`: one leading `<bos>`.
        """
        return self._inputs_of(self.prepare_images(image, labels), question, labels, preset)

    def _inputs_of(self, rgbs: Sequence[np.ndarray], question: str | None, labels: Sequence[str],
                   preset: str | None) -> Any:
        """`inputs_for` on images already prepared (`stream` prepares them once)."""
        from PIL import Image

        inputs = model_inputs(self.processor, [Image.fromarray(rgb) for rgb in rgbs], question, labels, preset)
        return inputs.to(self.device)

    def layout_of(self, input_ids: torch.Tensor, images: int = 1) -> ImageLayout:
        """Image token positions found from the ids (never assumed)."""
        positions = (input_ids[0] == self.image_token_id).nonzero().flatten().tolist()
        expected = self.grid[0] * self.grid[1] * images
        if len(positions) != expected:
            raise RequestError(
                f"the prompt holds {len(positions)} image tokens; expected {images} image(s) of {expected // images}"
            )
        return ImageLayout(positions=tuple(positions), grid=self.grid, image_token_id=self.image_token_id)

    def stream(
        self,
        image: ImageInput | Sequence[ImageInput],
        question: str | None = None,
        params: GenerationParams | None = None,
        *,
        methods: tuple[str, ...] | list[str] | None = None,
        labels: Sequence[str] = (),
        preset: str | None = None,
        cancel: threading.Event | None = None,
        **changes: Any,
    ) -> Run:
        """Validate and prepare a run (raises MedvizError on bad input); iterate it for Steps.

        `image` is one image (file bytes, a path or an RGB uint8 array) or a list of them (a
        study: PA, lateral, prior...), each with an optional entry in `labels`. `params`
        says how to sample (default: the model's suggestion, `self.suggested`); keyword
        `changes` replace its fields (`max_new_tokens=64`, `temperature=0.7`, ...) and are
        checked as it is.
        `preset` names the prompt (prompts.PRESETS; None: "medviz").
        """
        params = replace(params or self.suggested, **changes) if changes else (params or self.suggested)
        chosen = check_methods(methods)
        preset_name = check_preset(preset).name
        rgbs = self.prepare_images(image, labels)
        inputs = self._inputs_of(rgbs, question, labels, preset_name)
        layout = self.layout_of(inputs["input_ids"], len(rgbs))
        images = tuple(
            PromptImage(
                label=labels[i] if i < len(labels) else "",
                png=image_to_png(rgb),
                size=(int(rgb.shape[1]), int(rgb.shape[0])),
                positions=block,
            )
            for i, (rgb, block) in enumerate(zip(rgbs, layout.blocks))
        )
        ids = tuple(int(t) for t in inputs["input_ids"][0].tolist())
        prompt = Prompt(token_ids=ids, layout=layout, question=question, images=images, preset=preset_name,
                        token_texts=self.token_texts(ids, frozenset(layout.positions)), primer=self.primer)
        return Run(self, inputs, prompt, params, chosen, cancel or threading.Event())

    def token_texts(self, ids: Sequence[int], images: frozenset[int] = frozenset()) -> tuple[str, ...]:
        """Each position's text as the tokenizer decodes it alone ("" at the image positions)."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        shown = [[token] for i, token in enumerate(ids) if i not in images]
        pieces = iter(tokenizer.batch_decode(shown))
        return tuple("" if i in images else next(pieces) for i in range(len(ids)))


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an image file, or RequestError naming the path that cannot be read."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise RequestError(f"image file {shown!r} does not exist") from None
    except IsADirectoryError:
        raise RequestError(f"image path {shown!r} is a folder; pass a PNG, JPEG or DICOM file") from None
    except OSError as error:
        raise RequestError(f"image file {shown!r} cannot be read ({error.strerror or type(error).__name__})") from None


def _token_id(processor: Any, token: str) -> int | None:
    tokenizer = getattr(processor, "tokenizer", processor)
    value = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    return None if value is None or value == unk else int(value)


def _eos_ids(model: Any, processor: Any) -> frozenset[int]:
    """EOS ids from the generation config, plus <end_of_turn> (Gemma's chat stop)."""
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, model.config.get_text_config().eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    end_of_turn = _token_id(processor, "<end_of_turn>")
    if end_of_turn is not None:
        ids.add(end_of_turn)
    return frozenset(ids)
