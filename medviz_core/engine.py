"""The streaming loop: prefill, then one token per decode step, each with its relevancy maps.

Owns: `Engine` (a loaded model + processor + facts) and `Run`, the iterator that
`Engine.stream` returns: it yields one `Step` per generated token (the first right after
the prefill) and records why it stopped in `Run.end`. Does not own: loading models
(models.py), decoding image files (imaging.py), prompt texts (prompts.py), the formulas
(relevancy.py) or statistics (regions.py). Knows nothing about HTTP or frames.

Per step the maps are computed on the model's device and moved to the CPU once.
Generation is blocking torch code: callers run it on one worker thread.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Generator, Iterator, Mapping, Sequence, Union

import numpy as np
import torch

from . import capture as capture_module
from .decoding import IncrementalText, TokenChooser
from .errors import RequestError
from .imaging import image_to_png, load_image
from .inputs import check_processor, model_inputs
from .prompts import check_label, check_preset
from .regions import compute_stats
from .compiled import CompileUnavailable, CompiledDecoder, bucket
from .kv_cache import BufferCache
from .relevancy import check_methods, compute_maps
from .types import ContextLink, GenerationParams, ImageFocus, ImageLayout, ModelFacts, Prompt, PromptImage, Step, StreamEnd

MAX_NEW_TOKENS_LIMIT = 2048
MAX_IMAGES = 4
ImageInput = Union[bytes, np.ndarray, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ModelHandle:
    """What models.py hands the engine."""

    model: Any
    processor: Any
    name: str
    suggested: GenerationParams = GenerationParams()  # defaults a UI should offer for this model


class Engine:
    """A loaded Gemma 3 image-text model ready to stream with attention maps."""

    def __init__(self, handle: ModelHandle, compile: bool = False) -> None:
        self.compile = compile  # decode steps through compiled.py (falls back to eager, with a note, if it fails)
        self._decoders: dict[tuple[int, int], CompiledDecoder] = {}
        self.model = handle.model
        self.processor = handle.processor
        self.name = handle.name
        self.suggested = handle.suggested
        self.model.eval()
        check_processor(self.processor)
        capture_module.attach(self.model)
        text = self.model.config.get_text_config()
        self._text_config = text
        self.device = next(self.model.parameters()).device
        self.pipelined = self.device.type == "cuda"  # maps of step k while the device runs step k+1
        self.dtype = next(self.model.parameters()).dtype
        self.image_token_id = int(self.model.config.image_token_id)
        tokens = int(getattr(self.model.config, "mm_tokens_per_image", 256))
        side = int(round(tokens**0.5))
        if side * side != tokens:
            raise RequestError(f"mm_tokens_per_image must be a square number; got {tokens}")
        self.grid = (side, side)
        self.eos_ids = _eos_ids(self.model, self.processor)
        self.end_of_turn_id = _token_id(self.processor, "<end_of_turn>")
        self._cache_kwarg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
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
        )

    def compiled_decoder(self, length: int, image_tokens: int) -> CompiledDecoder:
        """The compiled decode step for sequences up to `length` tokens (rounded up to a bucket), built once."""
        key = (bucket(length), image_tokens)
        if key not in self._decoders:
            self._decoders[key] = CompiledDecoder(self, key[0], image_tokens)
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
        from PIL import Image

        pictures = [Image.fromarray(rgb) for rgb in self.prepare_images(image, labels)]
        inputs = model_inputs(self.processor, pictures, question, labels, preset)
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
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        methods: tuple[str, ...] | list[str] | None = None,
        cancel: threading.Event | None = None,
        labels: Sequence[str] = (),
        preset: str | None = None,
    ) -> "Run":
        """Validate and prepare a run (raises MedvizError on bad input); iterate it for Steps.

        `image` is one image (file bytes, a path or an RGB uint8 array) or a list of them (a
        study: PA, lateral, prior...), each with an optional entry in `labels`. `preset`
        names the prompt (prompts.PRESETS; None: "medviz").
        """
        params = check_params(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed)
        chosen = check_methods(methods)
        preset_name = check_preset(preset).name
        rgbs = self.prepare_images(image, labels)
        inputs = self.inputs_for(rgbs, question, labels, preset_name)
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
        prompt = Prompt(
            token_ids=tuple(int(t) for t in inputs["input_ids"][0].tolist()),
            layout=layout,
            question=question,
            image_png=images[0].png,
            image_size=images[0].size,
            images=images,
            preset=preset_name,
        )
        return Run(self, inputs, prompt, params, chosen, cancel or threading.Event())


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


def check_params(
    max_new_tokens: int, temperature: float, top_p: float, top_k: int, repetition_penalty: float, seed: int | None
) -> GenerationParams:
    """Range-check sampling parameters with messages naming the bound and the value."""
    checks = [
        (isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool)
         and 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT,
         f"max_new_tokens must be an integer in 1..{MAX_NEW_TOKENS_LIMIT}; got {max_new_tokens!r}"),
        (isinstance(temperature, (int, float)) and 0.0 <= temperature <= 5.0,
         f"temperature must be in 0..5 (0 = greedy); got {temperature!r}"),
        (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0, f"top_p must be in (0, 1]; got {top_p!r}"),
        (isinstance(top_k, int) and top_k >= 0, f"top_k must be an integer >= 0 (0 = off); got {top_k!r}"),
        (isinstance(repetition_penalty, (int, float)) and 0.0 < repetition_penalty <= 10.0,
         f"repetition_penalty must be in (0, 10]; got {repetition_penalty!r}"),
        (seed is None or isinstance(seed, int), f"seed must be an integer or None; got {seed!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise RequestError(message)
    return GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=top_k,
        repetition_penalty=float(repetition_penalty),
        seed=seed,
    )


class Run(Iterator[Step]):
    """One streaming generation. Iterate for Steps; `end` says how it finished."""

    def __init__(
        self,
        engine: Engine,
        inputs: Any,
        prompt: Prompt,
        params: GenerationParams,
        methods: tuple[str, ...],
        cancel: threading.Event,
    ) -> None:
        self.engine = engine
        self.inputs = inputs
        self.prompt = prompt
        self.params = params
        self.methods = methods
        self.wants_rollout = "rollout" in methods or "consensus" in methods
        self._not_text = np.zeros(len(prompt.token_ids), dtype=bool)  # image tokens and <bos>: not context
        self._not_text[list(prompt.layout.positions)] = True
        self._not_text[0] = True
        self.cancel = cancel
        self.end: StreamEnd | None = None
        self._steps: Generator[Step, None, None] = self._generate()

    def __iter__(self) -> "Run":
        return self

    def __next__(self) -> Step:
        return next(self._steps)

    def close(self) -> None:
        """Stop early (as cancel does) and release the model's cache."""
        self.cancel.set()
        self._steps.close()
        if self.end is None:  # closed before the first step
            self.end = StreamEnd(reason="cancelled", tokens=0, text="", prefill_ms=0.0, total_ms=0.0)

    def _generate(self) -> Generator[Step, None, None]:
        engine, params = self.engine, self.params
        started = time.perf_counter()
        input_ids = self.inputs["input_ids"]
        prompt_len = int(input_ids.shape[1])
        # 1. Per-sequence state: the KV cache, the capture (rollout preallocated), the compiled step if asked,
        #    and where the host finishes the maps (at once, or while the device runs the next step).
        forward = _Forward(self, prompt_len)
        finisher = _Finisher(engine.pipelined)
        chooser = TokenChooser(params, engine.device)
        text = IncrementalText(engine.processor)
        history = input_ids
        reason, message = "max_tokens", ""
        prefill_ms = 0.0
        totals = {"model_ms": 0.0, "maps_ms": 0.0}
        delivered: list[str] = []

        def deliver(step: Step | None) -> Iterator[Step]:
            if step is not None:
                totals["maps_ms"] += step.maps_ms
                delivered.append(step.text)
                yield step

        try:
            for index in range(params.max_new_tokens):
                if self.cancel.is_set():
                    reason = "cancelled"
                    break
                # 2. Forward: the prefill over the whole prompt, then one token at a time.
                tick = time.perf_counter()
                logits, position = forward.step(index, history)
                # 3. Choose the token (repetition penalty and sampling as transformers does).
                token = chooser.choose(history, logits)
                model_ms = (time.perf_counter() - tick) * 1000.0
                prefill_ms = model_ms if index == 0 else prefill_ms
                totals["model_ms"] += model_ms
                # 4. Maps for the query that produced the token, from one transfer to the CPU.
                finish = functools.partial(self._step, index, token, position, forward.reduced(position), text, model_ms)
                yield from deliver(finisher.submit(finish))
                # 5. Stop on EOS / end of turn, else feed the token back.
                if token in engine.eos_ids:
                    reason = "end_of_turn" if token == engine.end_of_turn_id else "eos"
                    break
                history = torch.cat([history, torch.tensor([[token]], device=history.device)], dim=1)
            if reason != "cancelled":
                yield from deliver(finisher.drain())
        except GeneratorExit:
            reason = "cancelled"
            raise
        except Exception as error:
            reason, message = "error", f"{type(error).__name__}: {error}"[:300]
            raise
        finally:
            finisher.close()
            self.end = StreamEnd(
                reason=reason,  # type: ignore[arg-type]
                tokens=len(delivered),
                text="".join(delivered),
                prefill_ms=prefill_ms,
                total_ms=(time.perf_counter() - started) * 1000.0,
                message=message,
                timings={**totals, "compile_s": forward.compile_seconds},
            )

    def _step(
        self,
        index: int,
        token: int,
        position: int,
        reduced: capture_module.ReducedRows,
        text: "IncrementalText",
        model_ms: float,
    ) -> Step:
        tick = time.perf_counter()
        engine = self.engine
        n = engine.grid[0] * engine.grid[1]
        # Each image's maps and statistics on the CPU, from the rows the device reduced (one transfer).
        focus = []
        for block, image in enumerate(self.prompt.images):
            cells = slice(block * n, (block + 1) * n)
            rollout = None if reduced.rollout is None or not self.wants_rollout else reduced.rollout[cells]
            flat, share = compute_maps(reduced.layer_means[:, cells], reduced.last_heads[:, cells], rollout, self.methods)
            by_name: Mapping[str, np.ndarray] = {name: flat[name].reshape(engine.grid) for name in self.methods}
            stats_map = by_name["consensus"] if "consensus" in by_name else by_name[self.methods[-1]]
            focus.append(ImageFocus(image.label, by_name, compute_stats(stats_map, share, image.size)))
        seeing = reduced.layers_seeing_image
        links, sink = context_links(reduced.context, self._not_text)
        total_mass = float(sum(f.stats.image_mass for f in focus))
        final = token in engine.eos_ids or index + 1 == self.params.max_new_tokens
        piece = text.add(token, final=final)
        return Step(
            index=index,
            token_id=token,
            text=piece,
            position=position,
            maps=focus[0].maps,
            stats=replace(focus[0].stats, image_mass=total_mass),
            model_ms=model_ms,
            maps_ms=(time.perf_counter() - tick) * 1000.0,
            layers_seeing_image=seeing,
            is_special=token in engine.eos_ids,
            context=links,
            sink=sink,
            images=tuple(focus) if len(focus) > 1 else (),
        )


CONTEXT_LINKS = 8


def context_links(row: np.ndarray, not_text: np.ndarray) -> tuple[tuple[ContextLink, ...], float]:
    """The CONTEXT_LINKS text positions the query attended most (mean over layers and heads), and <bos>'s share.

    `row` holds mean_l m[l][j] for every key j = 0..q; image positions and position 0 (the
    attention sink, reported apart as the second value) are left out of the links. Ties keep
    the lower position first.
    """
    values = np.asarray(row, dtype=np.float64)
    excluded = np.zeros(len(values), dtype=bool)
    excluded[: len(not_text)] = not_text[: len(values)]
    candidates = np.flatnonzero(~excluded)
    top = candidates[np.argsort(-values[candidates], kind="stable")[:CONTEXT_LINKS]]
    links = tuple(ContextLink(position=int(j), value=float(values[j])) for j in top)
    return links, float(values[0]) if len(values) else 0.0


class _Finisher:
    """Where the host turns a step's rows into a Step: at once, or pipelined on one worker thread.

    Pipelined (the default on CUDA), step k's maps and statistics are computed while the device
    runs step k+1, and `submit` hands back step k-1: the host's share of a step stops adding to
    the device's, for one step of latency. In order, one at a time (the text is incremental).
    """

    def __init__(self, pipelined: bool) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medviz-maps") if pipelined else None
        self.pending: Future[Step] | None = None

    def submit(self, finish: Callable[[], Step]) -> Step | None:
        """Finish a step; return the step that is now ready (this one, or pipelined the one before)."""
        if self.executor is None:
            return finish()
        ready = self.drain()
        self.pending = self.executor.submit(finish)
        return ready

    def drain(self) -> Step | None:
        ready, self.pending = self.pending, None
        return None if ready is None else ready.result()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


class _Forward:
    """The model calls of one run: eager (BufferCache, batched capture) or compiled decode steps (compiled.py)."""

    def __init__(self, run: Run, prompt_len: int) -> None:
        engine, facts = run.engine, run.engine.facts
        self.owner, self.engine, self.prompt_len = run, engine, prompt_len
        length = prompt_len + run.params.max_new_tokens
        self.decoder = engine.compiled_decoder(length, len(run.prompt.layout.positions)) if engine.compile else None
        if self.decoder is not None:
            self.decoder.reset()
        cache: Any = self.decoder.cache if self.decoder is not None else BufferCache(engine._text_config, length)
        self.cache = cache
        self.image_positions = torch.tensor(run.prompt.layout.positions, device=engine.device)
        self.capture = capture_module.Capture(
            layers=facts.layers, heads=facts.heads, image_positions=self.image_positions,
            max_length=cache.buffer.max_length, rollout=run.wants_rollout or self.decoder is not None,
            device=engine.device, cache=cache, rollout_buffer=None if self.decoder is None else self.decoder.rollout,
        )
        self.compile_seconds = 0.0
        self._packed: torch.Tensor | None = None

    def step(self, index: int, history: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Forward the prompt (index 0) or the last token; return the next-token logits [1, vocab] and q."""
        engine = self.engine
        q_start = 0 if index == 0 else self.prompt_len + index - 1
        if index > 0 and self.decoder is not None:
            try:
                logits, self._packed = self.decoder.step(int(history[0, -1]), q_start, self.image_positions)
                self.compile_seconds = self.decoder.compile_seconds
                return logits, q_start
            except CompileUnavailable as error:
                print(f"[medviz] {error}", file=sys.stderr, flush=True)
                engine.compile = False
                self.decoder = None
        kwargs: dict[str, Any] = ({**self.owner.inputs} if index == 0 else
                                  {"input_ids": history[:, -1:], "attention_mask": torch.ones_like(history)})
        kwargs[engine._cache_kwarg] = self.cache
        q_len = int(kwargs["input_ids"].shape[1])
        self._packed = None
        with torch.inference_mode(), self.capture.forward(q_start, q_len):
            output = engine.model(**kwargs, use_cache=True, logits_to_keep=1)
            self.capture.finish()
        return output.logits[:, -1, :], q_start + q_len - 1

    def reduced(self, position: int) -> capture_module.ReducedRows:
        """This step's rows for the maps, in one transfer to the CPU."""
        if self._packed is None:
            return self.capture.reduced(position)
        facts = self.engine.facts
        seeing = sum(1 for first in self.cache.visible_from(position + 1) if first <= self.capture.first_image)
        rows = capture_module.unpack_rows(self._packed.cpu().numpy(), facts.layers, facts.heads,
                                          self.capture.n_image, True, self.cache.buffer.max_length, seeing)
        return replace(rows, context=rows.context[: position + 1])


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
