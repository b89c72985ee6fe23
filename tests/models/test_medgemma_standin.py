"""`random:medgemma-4b` is MedGemma apart from its weights: the real Gemma 3 tokenizer and template, the real
prompt layout, and in bf16 on the CPU maps that match an eager bf16 forward within bf16's precision.

The bf16 check runs MedGemma-4B's two decoder layer kinds (one sliding-window, one full-attention layer, each at
full width) behind a one-layer SigLIP on a 224 x 224 image: without bf16 hardware (AVX2 only) a bf16 forward of
the full 896 x 896 tower costs minutes of CPU. `benchmarks/bf16_fidelity.py --against eager` measures the same
check at full size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medviz_core.models.gemma3_tokenizer import gemma3_tokenizer_available
from medviz_core.prompts import REPORT_QUESTION, REPORT_SYSTEM_PROMPT
from medviz_core.types import METHODS
from tests import reference

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not gemma3_tokenizer_available(),
                       reason="the real Gemma 3 tokenizer comes with the demo extra or $MEDVIZ_GEMMA3_TOKENIZER"),
]
QUESTION = "Is there a nodule?"
BOS, START_OF_TURN, END_OF_TURN, START_OF_IMAGE, END_OF_IMAGE, IMAGE_TOKEN = 2, 105, 106, 255999, 256000, 262144


@pytest.fixture(scope="module")
def engine() -> Any:
    from medviz_core.models.load import load_engine

    return load_engine("random:medgemma-4b?layers=1&dtype=bfloat16")


@pytest.fixture(scope="module")
def two_kinds() -> Any:
    """MedGemma-4B's decoder layers, one of each kind (sliding window 1024, then full attention), at full width,
    with its vocabulary, tokenizer and prompt layout, in bf16; a one-layer SigLIP (MedGemma's widths, patch 14)
    sees the image at 224 x 224, whose 16 x 16 patches are the 256 image tokens."""
    import torch

    from medviz_core.engine.engine import Engine, ModelHandle
    from medviz_core.models.gemma3_tokenizer import load_gemma3_tokenizer
    from medviz_core.models.load import random_medgemma
    from medviz_core.models.tiny import build_processor, medgemma_4b_config

    tokenizer = load_gemma3_tokenizer()
    config = medgemma_4b_config(2)
    config.text_config.layer_types = ["sliding_attention", "full_attention"]
    config.vision_config.num_hidden_layers = 1
    config.vision_config.image_size = 224
    model = random_medgemma(config, tokenizer, torch.device("cpu"), torch.bfloat16)
    processor = build_processor(tokenizer, image_size=224)
    return Engine(ModelHandle(model=model, processor=processor, name="random:medgemma-4b, two layer kinds"))


def expected_ids(engine: Any, system: str, text: str) -> list[int]:
    """The prompt layout of docs/model-facts.md, written out and tokenized by the real tokenizer."""
    image_block = "\n\n<start_of_image>" + "<image_soft_token>" * 256 + "<end_of_image>\n\n"
    prompt = (f"<bos><start_of_turn>user\n{system}\n\n{image_block}{text}<end_of_turn>\n"
              f"<start_of_turn>model\n")
    ids: list[int] = engine.processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return ids


def test_the_stand_in_has_medgemmas_vocabulary_and_special_ids(engine: Any) -> None:
    tokenizer = engine.processor.tokenizer
    assert len(tokenizer) == 262145
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<bos>", "<start_of_turn>", "<end_of_turn>",
            "<start_of_image>", "<end_of_image>", "<image_soft_token>")] == [BOS, START_OF_TURN, END_OF_TURN,
                                                                             START_OF_IMAGE, END_OF_IMAGE, IMAGE_TOKEN]
    assert engine.image_token_id == IMAGE_TOKEN
    assert engine.eos_ids == frozenset({1, 106})
    image_processor = engine.processor.image_processor
    assert (image_processor.size.height, image_processor.size.width) == (896, 896)
    assert (list(image_processor.image_mean), list(image_processor.image_std)) == ([0.5] * 3, [0.5] * 3)
    assert (image_processor.do_rescale, image_processor.do_pan_and_scan) == (True, False)


def test_the_prompt_layout_is_medgemmas(engine: Any, sample_bytes: bytes) -> None:
    inputs = engine.inputs_for(sample_bytes, QUESTION)
    ids = inputs["input_ids"][0].tolist()
    newline = engine.processor.tokenizer("\n", add_special_tokens=False)["input_ids"]
    user = engine.processor.tokenizer("user\n", add_special_tokens=False)["input_ids"]
    model = engine.processor.tokenizer("model\n", add_special_tokens=False)["input_ids"]
    assert ids[:2 + len(user)] == [BOS, START_OF_TURN, *user]
    assert ids.count(BOS) == 1
    start = ids.index(START_OF_IMAGE)
    assert ids[start + 1 : start + 257] == [IMAGE_TOKEN] * 256
    assert ids[start + 257] == END_OF_IMAGE
    # The system text's "\n\n" and the image block's own "\n\n" make one "\n\n\n\n" token, as for MedGemma.
    assert engine.processor.tokenizer.decode(ids[start - 1 : start]) == "\n\n\n\n"
    assert engine.processor.tokenizer.decode(ids[start + 258 : start + 259]) == "\n\n"
    assert ids[-(3 + len(model)):] == [END_OF_TURN, *newline, START_OF_TURN, *model]
    token_types = inputs["token_type_ids"][0].tolist()
    assert [i for i, t in enumerate(token_types) if t == 1] == [i for i, t in enumerate(ids) if t == IMAGE_TOKEN]


def test_report_and_question_prompts_are_the_ids_real_medgemma_gets(engine: Any, sample_bytes: bytes) -> None:
    from medviz_core.prompts import QUESTION_SYSTEM_PROMPT

    report = engine.inputs_for(sample_bytes)["input_ids"][0].tolist()
    assert report == expected_ids(engine, REPORT_SYSTEM_PROMPT, REPORT_QUESTION)
    question = engine.inputs_for(sample_bytes, QUESTION)["input_ids"][0].tolist()
    assert question == expected_ids(engine, QUESTION_SYSTEM_PROMPT, QUESTION)


# bf16 keeps 8 significant bits: unit roundoff u = 2^-8 = 0.39%. Both sides round every attention score to bf16
# before the softmax (the capture multiplies bf16 queries and keys as eager attention does), eager also rounds every
# probability after it, and the two runs' layer-0 outputs (SDPA with a cache vs one eager pass) differ by bf16
# rounding before they feed layer 1. So cell values agree to a few u of the map's scale, not to 1e-5: measured at
# most 1.4% of the map's largest value for raw, layer_weighted, flow and rollout, 3.1% for head_importance (a ratio
# of two rounded quantities) and 2.1% for consensus, over 16 tokens. The bound is 10u = 4% of the map's largest
# value (a formula error, such as flow without normalised weights, is off by >20%).
# image_mass sums 256 rounded probabilities: its errors partly cancel; measured 3e-4, bound 2e-3.
BF16_TOLERANCE = 10 * 2.0**-8
BF16_MASS_TOLERANCE = 2e-3
# head_importance keeps the top ceil(H/2) heads: two heads whose importances are within bf16 rounding of each other
# (relative 4u) may swap, and then either selection is right.
NEAR_TIE = 4 * 2.0**-8


def selections(importances: list[float]) -> list[list[int]]:
    """The reference selection, plus the one a bf16 near-tie at the cut could give instead."""
    kept = reference.kept_heads(importances)
    order = sorted(range(len(importances)), key=lambda h: (-importances[h], h))
    last_in, first_out = order[len(kept) - 1], order[len(kept)]
    options = [kept]
    if importances[last_in] - importances[first_out] <= NEAR_TIE * importances[last_in]:
        options.append([first_out if h == last_in else h for h in kept])
    return options


def test_bf16_maps_match_an_eager_bf16_forward_within_bf16_precision(two_kinds: Any, sample_bytes: bytes) -> None:
    facts = two_kinds.facts
    assert (facts.layers, facts.heads, facts.kv_heads, facts.grid) == (2, 8, 4, (16, 16))
    assert (facts.sliding_window, facts.full_attention_layers, facts.dtype) == (1024, (1,), "bfloat16")
    assert_bf16_maps_match_an_eager_forward(two_kinds, sample_bytes)


def assert_bf16_maps_match_an_eager_forward(engine: Any, sample_bytes: bytes) -> None:
    """Every map of 8 streamed bf16 steps within BF16_TOLERANCE of the formulas on one eager bf16 forward."""
    assert str(engine.dtype) == "torch.bfloat16"
    errors, mass_error = bf16_errors(engine, sample_bytes, QUESTION, tokens=8)
    for name in METHODS:
        worst = max(errors[name])
        assert worst <= BF16_TOLERANCE, f"{name} step {errors[name].index(worst)}: {worst:.4f} of the map's scale"
    assert mass_error <= BF16_MASS_TOLERANCE


def bf16_errors(engine: Any, image: bytes, question: str, tokens: int) -> tuple[dict[str, list[float]], float]:
    """Per method and streamed step, |map - formula on one eager forward| / the formula map's largest value (the
    better of the near-tie head selections), and the largest image_mass difference over the steps."""
    run = engine.stream(image, question=question, max_new_tokens=tokens)
    steps = list(run)
    inputs = engine.inputs_for(image, question)
    attn = reference.full_attentions(engine, inputs, [s.token_id for s in steps])
    positions = list(run.prompt.layout.positions)
    errors: dict[str, list[float]] = {name: [] for name in METHODS}
    mass_error = 0.0
    for step in steps:
        candidates = [reference.maps_for_query(attn, step.position, positions, engine.grid, kept=kept)
                      for kept in selections(reference.head_importances(attn, step.position, positions))]
        for name in METHODS:
            errors[name].append(min(float(np.abs(step.maps[name] - expected[name]).max() / np.abs(expected[name]).max())
                                    for expected in candidates))
        mass_error = max(mass_error, abs(step.image_mass - reference.image_mass(attn, step.position, positions)))
    return errors, mass_error
