"""The engine's prompt ids are the model card's: one <bos>, apply_chat_template(tokenize=True)'s ids and pixels,
and every processor setting that would silently change what the model sees fails loudly."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

from medviz_core.engine.inputs import check_inputs, model_inputs
from medviz_core.errors import ModelLoadError
from medviz_core.models.gemma3_tokenizer import gemma3_tokenizer_available
from medviz_core.prompts import PRESETS, build_messages

QUESTION = "Is there a nodule?"


def model_card_inputs(processor: Any, pictures: list[Any], question: str | None, labels: list[str],
                      preset: str) -> Any:
    """What MedGemma's model card does: apply_chat_template with tokenize=True and return_dict=True."""
    messages = build_messages(question, pictures[0], pictures[1:], labels, preset=preset)
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def assert_same_as_the_model_card(processor: Any, pictures: list[Any], question: str | None,
                                  labels: list[str], preset: str) -> list[int]:
    ours = model_inputs(processor, pictures, question, labels, preset)
    theirs = model_card_inputs(processor, pictures, question, labels, preset)
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert ours["token_type_ids"].tolist() == theirs["token_type_ids"].tolist()
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    ids: list[int] = ours["input_ids"][0].tolist()
    bos = processor.tokenizer.bos_token_id
    assert ids[0] == bos and ids[1] != bos
    return ids


@pytest.fixture(scope="module")
def pictures(cxr_dir: Any) -> list[Any]:
    return [Image.open(cxr_dir / name).convert("RGB") for name in ("nih_00000001_000.png", "nih_00027426_000_512.png")]


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("question", [None, QUESTION])
def test_tiny_ids_are_the_model_cards_with_one_bos(tiny_engine: Any, pictures: list[Any], preset: str,
                                                   question: str | None) -> None:
    assert_same_as_the_model_card(tiny_engine.processor, pictures[:1], question, [], preset)


def test_a_labelled_study_has_the_model_cards_ids(tiny_engine: Any, pictures: list[Any]) -> None:
    ids = assert_same_as_the_model_card(tiny_engine.processor, pictures, QUESTION, ["PA", "prior"], "medviz")
    boi = tiny_engine.processor.tokenizer.convert_tokens_to_ids("<start_of_image>")
    assert ids.count(boi) == 2


def test_the_engine_feeds_exactly_those_inputs(tiny_engine: Any, sample_bytes: bytes) -> None:
    picture = Image.fromarray(tiny_engine.prepare_image(sample_bytes))
    theirs = model_card_inputs(tiny_engine.processor, [picture], QUESTION, [], "medviz")
    run = tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=1)
    assert list(run.prompt.token_ids) == theirs["input_ids"][0].tolist()


def test_the_tiny_tokenizer_adds_a_bos_like_gemma_so_a_doubled_bos_would_show(tiny_engine: Any,
                                                                              pictures: list[Any]) -> None:
    processor = tiny_engine.processor
    assert processor.tokenizer("lungs")["input_ids"][0] == processor.tokenizer.bos_token_id
    text = processor.apply_chat_template(build_messages(QUESTION, pictures[0]), tokenize=False,
                                         add_generation_prompt=True)
    doubled = processor(text=text, images=[[pictures[0]]], return_tensors="pt")  # the old, wrong way
    with pytest.raises(ModelLoadError) as error:
        check_inputs(processor, doubled, 1)
    assert str(error.value) == ("the prompt starts with 2 <bos> tokens; Gemma 3 expects exactly one (check the chat "
                                "template and the tokenizer's post-processor)")


@pytest.mark.skipif(not gemma3_tokenizer_available(), reason="needs the real Gemma 3 tokenizer (demo extra)")
@pytest.mark.parametrize("question", [None, QUESTION])
def test_the_demo_processor_gives_the_model_cards_ids_with_one_bos(pictures: list[Any], question: str | None) -> None:
    from medviz_core.models.demo import build_demo_processor
    from medviz_core.models.gemma3_tokenizer import load_gemma3_tokenizer

    processor = build_demo_processor(load_gemma3_tokenizer())
    ids = assert_same_as_the_model_card(processor, pictures[:1], question, [], "medviz")
    assert ids[0] == 2


class WithoutTokenTypes:
    """A processor wrapper that drops token_type_ids, as an old or foreign processor would."""

    def __init__(self, processor: Any) -> None:
        self._processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        return self._processor.apply_chat_template(*args, **kwargs)

    def __call__(self, **kwargs: Any) -> Any:
        out = self._processor(**kwargs)
        del out["token_type_ids"]
        return out


def test_missing_token_type_ids_is_a_model_load_error(tiny_engine: Any, pictures: list[Any]) -> None:
    with pytest.raises(ModelLoadError) as error:
        model_inputs(WithoutTokenTypes(tiny_engine.processor), pictures[:1], QUESTION)
    assert str(error.value) == (
        "the processor returned no token_type_ids; without them Gemma 3 loses its bidirectional attention among "
        "image tokens (use a Gemma3Processor from transformers >= 5.17)"
    )


PAN_AND_SCAN_MESSAGE = (
    "the image processor has do_pan_and_scan on, which adds crops as extra image blocks; medviz maps one 16 x 16 "
    "block per image: set do_pan_and_scan to false in preprocessor_config.json"
)


def pan_and_scan_processor(tiny_engine: Any) -> Any:
    from transformers import AutoProcessor

    from medviz_core.models.tiny import ensure_tiny

    return AutoProcessor.from_pretrained(ensure_tiny(), do_pan_and_scan=True, pan_and_scan_min_crop_size=8)


def test_a_processor_with_pan_and_scan_on_is_refused_when_the_engine_is_built(tiny_engine: Any) -> None:
    from medviz_core.engine.engine import Engine, ModelHandle

    processor = pan_and_scan_processor(tiny_engine)
    assert processor.image_processor.do_pan_and_scan is True
    with pytest.raises(ModelLoadError) as error:
        Engine(ModelHandle(model=tiny_engine.model, processor=processor, name="tiny"))
    assert str(error.value) == PAN_AND_SCAN_MESSAGE


def test_extra_image_blocks_from_pan_and_scan_crops_are_refused(tiny_engine: Any) -> None:
    processor = pan_and_scan_processor(tiny_engine)
    wide = Image.new("RGB", (256, 64), (90, 90, 90))  # 4:1, so pan-and-scan cuts crops
    text = processor.apply_chat_template(build_messages(QUESTION, wide), tokenize=False, add_generation_prompt=True)
    cropped = processor(text=text, images=[[wide]], return_tensors="pt", add_special_tokens=False)
    with pytest.raises(ModelLoadError) as error:
        check_inputs(processor, cropped, 1)
    assert str(error.value) == ("the prompt holds 5 image blocks for 1 image(s); the processor adds crops "
                                "(do_pan_and_scan) or splits images: set do_pan_and_scan to false")
