"""Offline builders for stand-in Gemma 3 image-text models: `tiny` and MedGemma-4B's shapes.

Owns: the configs, the byte-level BPE tokenizer with Gemma 3's special tokens, the chat
template, and building + caching the `tiny` folder. Does not own: choosing a model from a
ref or loading it for generation (models/load.py). Everything here is built from code; nothing
is downloaded. Like the real Gemma 3 tokenizer, the tiny one adds `<bos>` in front of every
text it encodes (a `<bos> $A` post-processor), so a doubled BOS shows up in tests; both
use Gemma 3's chat template (models/gemma3_tokenizer.py): system text at the start of the first
user turn, the image as `<start_of_image>`, which the processor expands to 256 image tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medviz_core.models.cache import build_once
from medviz_core.models.gemma3_tokenizer import GEMMA3_CHAT_TEMPLATE

TINY_VERSION = "tiny-v2"  # v2: Gemma-style <bos> post-processor, Gemma 3 chat template
TINY_SEED = 1234

SPECIAL_TOKENS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)

# Sentences the tiny tokenizer learns its merges from: radiology words give short ids.
_CORPUS = (
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Findings: the cardiomediastinal silhouette is within normal limits.",
    "Impression: no acute cardiopulmonary process. Mild cardiomegaly is seen.",
    "Describe the chest X-ray. Is there a nodule, a mass, consolidation or edema?",
    "You are an expert radiologist. Write a structured report of this chest radiograph.",
    "Bones and soft tissues are unremarkable. Lines and tubes: none.",
)


def build_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE trained on a few radiology sentences, carrying Gemma 3's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(_CORPUS), trainer)
    bos = bpe.token_to_id("<bos>")
    bpe.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {name: int(tokenizer.convert_tokens_to_ids(name)) for name in SPECIAL_TOKENS}
    return ids


def tiny_config(tokenizer: Any, sliding_window: int = 512) -> Any:
    """Gemma 3 with a 64 px SigLIP (32 x 32 patches pooled to 16 x 16) and 4 text layers."""
    from transformers import Gemma3Config

    ids = _token_ids(tokenizer)
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": sliding_window,
        # Like MedGemma, the last layer slides and one earlier layer sees everything.
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "max_position_embeddings": 8192,
        "pad_token_id": ids["<pad>"],
        "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
        "bos_token_id": ids["<bos>"],
    }
    vision = {
        "model_type": "siglip_vision_model",
        "image_size": 64,
        "patch_size": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vision_use_head": False,
    }
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=256,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )


def medgemma_4b_config(layers: int = 34) -> Any:
    """MedGemma-4B's exact shapes (docs/model-facts.md); `layers` may shrink the decoder for quick runs."""
    from transformers import Gemma3Config

    full = {5, 11, 17, 23, 29}
    text = {
        "vocab_size": 262208,
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": layers,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 1024,
        "layer_types": ["full_attention" if i in full else "sliding_attention" for i in range(layers)],
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "max_position_embeddings": 131072,
        "eos_token_id": [1, 106],
        "bos_token_id": 2,
        "pad_token_id": 0,
    }
    vision = {
        "model_type": "siglip_vision_model",
        "image_size": 896,
        "patch_size": 14,
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "vision_use_head": False,
    }
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=256,
        boi_token_index=255999,
        eoi_token_index=256000,
        image_token_index=262144,
    )


def build_processor(tokenizer: Any, image_size: int) -> Any:
    """A Gemma 3 processor as MedGemma's: square resize (bilinear), rescale, mean/std 0.5, no pan-and-scan."""
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor
    from transformers.image_utils import PILImageResampling

    image_processor = Gemma3ImageProcessorPil(  # MedGemma's preprocessor_config.json, at `image_size`
        size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=256,
    )


def randomize_projector(model: Any, seed: int) -> None:
    """The projector weight starts at zero in transformers; give it random values so images matter."""
    import torch

    projector = model.model.multi_modal_projector
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight = projector.mm_input_projection_weight
    values = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
    with torch.no_grad():
        weight.copy_((values / weight.shape[0] ** 0.5).to(weight.dtype))


def build_tiny(folder: Path) -> None:
    """Build the deterministic tiny model, tokenizer and processor into `folder`."""
    import torch
    from transformers import AutoModelForImageTextToText

    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(TINY_SEED)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    randomize_projector(model, TINY_SEED)
    ids = _token_ids(tokenizer)
    model.generation_config.eos_token_id = [ids["<eos>"], ids["<end_of_turn>"]]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.bos_token_id = ids["<bos>"]
    model.save_pretrained(folder)
    build_processor(tokenizer, image_size=64).save_pretrained(folder)


def ensure_tiny() -> Path:
    """Return the tiny model's folder, building it once."""
    return build_once(TINY_VERSION, build_tiny)
