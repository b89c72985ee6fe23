"""Model refs resolve to engines, and every way loading can fail gives one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medviz_core.errors import ModelLoadError
from medviz_core.models import load_engine, parse_ref
from medviz_core.tiny import ensure_tiny, medgemma_4b_config


def test_refs_parse_into_kind_target_and_options() -> None:
    assert parse_ref("tiny").kind == "tiny"
    assert parse_ref("tiny?window=40").options == {"window": "40"}
    assert parse_ref("random:medgemma-4b?layers=2").options == {"layers": "2"}
    assert (parse_ref("google/medgemma-4b-it").kind, parse_ref("google/medgemma-4b-it").target) == (
        "hub",
        "google/medgemma-4b-it",
    )


def test_an_unknown_ref_names_the_choices() -> None:
    with pytest.raises(ModelLoadError) as error:
        parse_ref("gpt-5")
    assert str(error.value) == (
        "unknown model 'gpt-5'; use tiny, demo, random:medgemma-4b, a local folder or a hub id such as "
        "google/medgemma-4b-it"
    )


def test_a_missing_folder_says_it_does_not_exist() -> None:
    with pytest.raises(ModelLoadError) as error:
        load_engine("./no/such/model")
    assert str(error.value) == "model folder 'no/such/model' does not exist; pass an existing folder or a hub id"


def test_a_bad_option_value_is_refused() -> None:
    with pytest.raises(ModelLoadError) as error:
        load_engine("tiny?window=abc")
    assert str(error.value) == "option window must be an integer in 2..1048576; got 'abc'"


def test_a_model_that_is_not_gemma3_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelLoadError) as error:
        load_engine(str(tmp_path))
    assert "is a 'gpt2' model; medviz needs a Gemma 3 image-text model (model_type 'gemma3')" in str(error.value)


def test_a_hub_id_without_network_gives_one_line_naming_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_engine("google/medgemma-4b-it")
    message = str(error.value)
    assert message.startswith("could not load 'google/medgemma-4b-it' from the model hub (")
    assert "run `hf auth login`, check network access, or pass a local folder with --model PATH" in message
    assert "\n" not in message


def test_a_local_folder_loads_through_the_real_model_path(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "gemma3-folder"
    shutil.copytree(ensure_tiny(), folder)
    engine = load_engine(str(folder))
    assert engine.facts.name == str(folder)
    assert (engine.facts.layers, engine.facts.heads, engine.facts.grid) == (4, 4, (16, 16))
    assert engine.facts.dtype == "float32"


def test_tiny_is_deterministic_across_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("MEDVIZ_CACHE", str(tmp_path))
    fresh = load_engine("tiny").model.state_dict()
    monkeypatch.delenv("MEDVIZ_CACHE")
    cached = load_engine("tiny").model.state_dict()
    assert fresh.keys() == cached.keys()
    assert all(torch.equal(fresh[k], cached[k]) for k in fresh)


def test_tiny_has_the_shapes_the_tests_rely_on(tiny_engine: Any) -> None:
    facts = tiny_engine.facts
    assert (facts.layers, facts.heads, facts.kv_heads, facts.grid) == (4, 4, 2, (16, 16))
    assert facts.full_attention_layers == (2,)
    assert facts.image_token_id == tiny_engine.processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")


def test_random_medgemma_config_has_medgemma_4b_shapes() -> None:
    config = medgemma_4b_config()
    text, vision = config.text_config, config.vision_config
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size) == (34, 2560, 10240)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (8, 4, 256)
    assert (text.query_pre_attn_scalar, text.vocab_size, text.sliding_window) == (256, 262208, 1024)
    assert [i for i, kind in enumerate(text.layer_types) if kind == "full_attention"] == [5, 11, 17, 23, 29]
    assert (vision.image_size, vision.patch_size, vision.hidden_size) == (896, 14, 1152)
    assert (vision.num_hidden_layers, vision.num_attention_heads, vision.intermediate_size) == (27, 16, 4304)
    assert config.mm_tokens_per_image == 256
    assert (config.boi_token_index, config.eoi_token_index, config.image_token_index) == (255999, 256000, 262144)
