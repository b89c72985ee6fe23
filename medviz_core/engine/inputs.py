"""Model inputs for a prompt: the ids and pixels MedGemma's model card would build, checked.

Owns: `model_inputs`, which renders the chat messages (prompts.build_messages) with the
processor's chat template and runs the processor on the text and images exactly as
`processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
return_dict=True)` does: the template writes the one `<bos>`, so the tokenizer adds no
second one. It then checks what would otherwise go wrong silently: exactly one leading
`<bos>`, `token_type_ids` present (Gemma 3's bidirectional image attention needs them) and
one image block per image (pan-and-scan adds more). Every failure is a `ModelLoadError`
naming the setting. Also `answer_primer`: the words the template writes into the model's
answer before its first token (the demo's "Findings: The"), which a report starts with.
Does not own decoding image files (imaging/load.py) or prompt texts (prompts.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from medviz_core.errors import ModelLoadError
from medviz_core.prompts import CONTROL_TOKEN, build_messages

_TURN_HEADER = re.compile(r"<start_of_turn>(?:model|user)?\n?")


def model_inputs(
    processor: Any,
    pictures: Sequence[Any],
    question: str | None,
    labels: Sequence[str] = (),
    preset: str | None = None,
) -> Any:
    """Processor outputs (return_tensors="pt") for PIL `pictures` and a question (None: the report)."""
    check_processor(processor)
    messages = build_messages(question, pictures[0], pictures[1:], labels, preset=preset)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokenizer = processor.tokenizer
    template_writes_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    inputs = processor(text=text, images=[list(pictures)], return_tensors="pt",
                       add_special_tokens=not template_writes_bos)
    check_inputs(processor, inputs, len(pictures))
    return inputs


def answer_primer(processor: Any) -> str:
    """The answer's first words as the chat template primes them: what `add_generation_prompt` adds after
    the conversation, less the turn markers ("Findings: The" on demo; "" on Gemma 3's own template,
    which adds only `<start_of_turn>model`). The model's first token continues this text."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    try:
        bare = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        primed = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that cannot render a text-only turn primes nothing medviz can tell
        return ""
    if not isinstance(bare, str) or not isinstance(primed, str) or not primed.startswith(bare):
        return ""
    return CONTROL_TOKEN.sub("", _TURN_HEADER.sub("", primed[len(bare):]))


def check_processor(processor: Any) -> None:
    """ModelLoadError for processor settings that change the prompt layout medviz reads."""
    image_processor = getattr(processor, "image_processor", None)
    if getattr(image_processor, "do_pan_and_scan", None):
        raise ModelLoadError(
            "the image processor has do_pan_and_scan on, which adds crops as extra image blocks; medviz maps one "
            "16 x 16 block per image: set do_pan_and_scan to false in preprocessor_config.json"
        )


def check_inputs(processor: Any, inputs: Any, images: int) -> None:
    """The checks of the module docstring on one processed prompt."""
    ids = inputs["input_ids"][0].tolist()
    tokenizer = processor.tokenizer
    bos = tokenizer.bos_token_id
    if bos is not None:
        leading = next((i for i, token in enumerate(ids) if token != bos), len(ids))
        if leading != 1:
            raise ModelLoadError(f"the prompt starts with {leading} <bos> tokens; Gemma 3 expects exactly one "
                                 f"(check the chat template and the tokenizer's post-processor)")
    if "token_type_ids" not in inputs:
        raise ModelLoadError(
            "the processor returned no token_type_ids; without them Gemma 3 loses its bidirectional attention "
            "among image tokens (use a Gemma3Processor from transformers >= 5.17)"
        )
    boi = getattr(tokenizer, "boi_token_id", None)
    blocks = ids.count(boi) if boi is not None else images
    if blocks != images:
        raise ModelLoadError(
            f"the prompt holds {blocks} image blocks for {images} image(s); the processor adds crops "
            f"(do_pan_and_scan) or splits images: set do_pan_and_scan to false"
        )
