"""The streaming engine on the tiny model: exact maps, model-identical tokens, clean stops."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medviz_core.errors import RequestError
from medviz_core.maps.host_maps import MapsProcessError
from medviz_core.models.load import load_engine
from medviz_core.types import METHODS
from tests import reference

QUESTION = "Is there a nodule?"


def streamed(engine: Any, image: bytes, **kwargs: Any) -> tuple[Any, list[Any]]:
    run = engine.stream(image, **kwargs)
    return run, list(run)


def assert_maps_match_one_full_forward(engine: Any, image: bytes, question: str | None, steps: int) -> None:
    run, result = streamed(engine, image, question=question, max_new_tokens=steps)
    inputs = engine.inputs_for(image, question)
    generated = [s.token_id for s in result]
    attn = reference.full_attentions(engine, inputs, generated)
    image_positions = list(run.prompt.layout.positions)
    for step in result:
        expected = reference.maps_for_query(attn, step.position, image_positions, engine.grid)
        for name in METHODS:
            np.testing.assert_allclose(step.maps[name], expected[name], atol=1e-5, rtol=0, err_msg=f"{name} step {step.index}")
        assert step.image_mass == pytest.approx(reference.image_mass(attn, step.position, image_positions), abs=1e-5)


def test_every_streamed_map_equals_one_full_forward_pass(tiny_engine: Any, sample_bytes: bytes) -> None:
    assert_maps_match_one_full_forward(tiny_engine, sample_bytes, QUESTION, steps=6)


def test_maps_stay_exact_when_generation_crosses_the_sliding_window(sample_bytes: bytes) -> None:
    probe = load_engine("tiny")
    prompt = probe.stream(sample_bytes, question=QUESTION, max_new_tokens=1).prompt
    last_image = prompt.layout.positions[-1]
    first_image = prompt.layout.positions[0]
    # The window covers the whole image at the first token and loses it a few tokens later.
    window = len(prompt.token_ids) - first_image + 1
    engine = load_engine(f"tiny?window={window}")
    run, result = streamed(engine, sample_bytes, question=QUESTION, max_new_tokens=8)
    seeing = [s.layers_seeing_image for s in result]
    assert seeing[0] == 4
    assert seeing[-1] == 1  # only the full-attention layer still sees every image token
    assert last_image < result[-1].position
    assert_maps_match_one_full_forward(engine, sample_bytes, QUESTION, steps=8)


def test_greedy_tokens_equal_model_generate(tiny_engine: Any, sample_bytes: bytes) -> None:
    _, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=12)
    inputs = tiny_engine.inputs_for(sample_bytes, QUESTION)
    model = tiny_engine.model
    previous = model.config.get_text_config()._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    finally:
        model.set_attn_implementation(previous)
    assert [s.token_id for s in result] == out[0, inputs["input_ids"].shape[1] :].tolist()


def test_image_positions_come_from_the_ids_not_from_position_one(tiny_engine: Any, sample_bytes: bytes) -> None:
    run = tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=1)
    ids = run.prompt.token_ids
    positions = run.prompt.layout.positions
    assert len(positions) == 256
    assert positions[0] > 1
    assert positions == tuple(range(positions[0], positions[0] + 256))
    assert all(ids[p] == tiny_engine.image_token_id for p in positions)
    tokenizer = tiny_engine.processor.tokenizer
    assert ids[positions[0] - 1] == tokenizer.convert_tokens_to_ids("<start_of_image>")
    assert ids[positions[-1] + 1] == tokenizer.convert_tokens_to_ids("<end_of_image>")


def test_first_step_comes_from_the_prefill_and_positions_advance_by_one(tiny_engine: Any, sample_bytes: bytes) -> None:
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=4)
    prompt_len = len(run.prompt.token_ids)
    assert [s.position for s in result] == [prompt_len - 1, prompt_len, prompt_len + 1, prompt_len + 2]
    assert [s.index for s in result] == [0, 1, 2, 3]
    assert all(s.maps[m].shape == (16, 16) and s.maps[m].dtype == np.float32 for s in result for m in METHODS)


def test_stream_stops_at_the_token_limit_and_says_so(tiny_engine: Any, sample_bytes: bytes) -> None:
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=3)
    assert len(result) == 3
    assert run.end is not None
    assert (run.end.reason, run.end.tokens) == ("max_tokens", 3)
    assert run.end.text == "".join(s.text for s in result)


def cancelled_after(engine: Any, image: bytes, tokens: int) -> tuple[Any, list[Any]]:
    """A 50-token stream cancelled as soon as `tokens` steps have arrived: the run and the steps it gave."""
    cancel = threading.Event()
    run = engine.stream(image, question=QUESTION, max_new_tokens=50, cancel=cancel)
    taken = []
    for step in run:
        taken.append(step)
        if len(taken) == tokens:
            cancel.set()
    return run, taken


def test_cancel_stops_the_stream_before_the_next_token(tiny_engine: Any, sample_bytes: bytes) -> None:
    run, taken = cancelled_after(tiny_engine, sample_bytes, 2)
    assert len(taken) == 2
    assert run.end is not None and run.end.reason == "cancelled"


def test_end_of_turn_token_ends_the_stream(tiny_engine: Any, sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    end_of_turn = tiny_engine.end_of_turn_id
    from medviz_core.engine import decoding
    calls = iter([40, 41, end_of_turn, 42])
    monkeypatch.setattr(decoding.TokenChooser, "choose", lambda self, history, logits: next(calls))
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=10)
    assert [s.token_id for s in result] == [40, 41, end_of_turn]
    assert result[-1].is_special
    assert run.end is not None and run.end.reason == "end_of_turn"


def test_text_pieces_are_whole_characters_across_byte_tokens(tiny_engine: Any, sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = tiny_engine.processor.tokenizer
    ids = tokenizer("é ✓ ok", add_special_tokens=False)["input_ids"]
    from medviz_core.engine import decoding
    calls = iter(ids)
    monkeypatch.setattr(decoding.TokenChooser, "choose", lambda self, history, logits: next(calls))
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=len(ids))
    pieces = [s.text for s in result]
    assert "".join(pieces) == "é ✓ ok"
    assert all("\ufffd" not in p for p in pieces)
    assert run.end is not None and run.end.text == "é ✓ ok"


def test_seeded_sampling_repeats_exactly(tiny_engine: Any, sample_bytes: bytes) -> None:
    settings = dict(question=QUESTION, max_new_tokens=6, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    first = [s.token_id for s in tiny_engine.stream(sample_bytes, **settings)]
    second = [s.token_id for s in tiny_engine.stream(sample_bytes, **settings)]
    assert first == second


def test_a_method_subset_streams_only_those_maps(tiny_engine: Any, sample_bytes: bytes) -> None:
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=2, methods=["raw", "flow"])
    assert run.methods == ("raw", "flow")
    assert set(result[0].maps) == {"raw", "flow"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer in 1..2048; got 0"),
        ({"temperature": -1.0}, "temperature must be 0 (greedy) or in 0.01..5; got -1.0"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]; got 0.0"),
        ({"methods": ["saliency"]}, "methods must be a non-empty subset of raw, layer_weighted, head_importance, flow, rollout, consensus; got ['saliency']"),
    ],
)
def test_bad_parameters_get_a_clear_error(tiny_engine: Any, sample_bytes: bytes, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError) as error:
        tiny_engine.stream(sample_bytes, **kwargs)
    assert str(error.value) == message


def test_a_failure_mid_stream_ends_with_reason_error(tiny_engine: Any, sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from medviz_core.engine import decoding
    calls = iter([40])

    def choose_then_fail(self: Any, history: Any, logits: Any) -> int:
        for token in calls:
            return token
        raise RuntimeError("device lost")

    monkeypatch.setattr(decoding.TokenChooser, "choose", choose_then_fail)
    run = tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=5)
    first = next(run)
    with pytest.raises(RuntimeError):
        next(run)
    assert first.token_id == 40
    assert run.end is not None
    assert (run.end.reason, run.end.message, run.end.tokens) == ("error", "RuntimeError: device lost", 1)


def test_closing_a_run_early_ends_it_as_cancelled(tiny_engine: Any, sample_bytes: bytes) -> None:
    run = tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=5)
    next(run)
    run.close()
    assert run.end is not None and (run.end.reason, run.end.tokens) == ("cancelled", 1)


@pytest.mark.parametrize("names", [
    ("nih_00000001_000.png", "commons_haggstrom_normal_pa.jpg"),
    ("nih_00000001_000.png", "commons_haggstrom_normal_pa.jpg", "nih_00027426_000_512.png"),
])
def test_several_images_each_get_exact_maps_and_a_share(tiny_engine: Any, cxr_dir: Any, names: tuple[str, ...]) -> None:
    images = [(cxr_dir / name).read_bytes() for name in names]
    labels = ["PA", "lateral", "prior"][: len(names)]
    run = tiny_engine.stream(images, question=QUESTION, max_new_tokens=4, labels=labels)
    result = list(run)
    blocks = run.prompt.layout.blocks
    assert [img.label for img in run.prompt.images] == labels
    assert [len(b) for b in blocks] == [256] * len(names)
    assert run.prompt.images[1].size == (786, 899)
    inputs = tiny_engine.inputs_for(images, QUESTION, labels)
    attn = reference.full_attentions(tiny_engine, inputs, [s.token_id for s in result])
    for step in result:
        assert [focus.label for focus in step.images] == labels
        for focus, block in zip(step.images, blocks):
            expected = reference.maps_for_query(attn, step.position, list(block), tiny_engine.grid)
            for name in METHODS:
                np.testing.assert_allclose(focus.maps[name], expected[name], atol=1e-5, rtol=0,
                                           err_msg=f"{focus.label} {name} step {step.index}")
            assert focus.share == pytest.approx(
                reference.image_mass(attn, step.position, list(block)), abs=1e-5)
        assert step.image_mass == pytest.approx(sum(f.share for f in step.images), abs=1e-6)
        assert step.maps is step.images[0].maps


def test_too_many_images_are_refused(tiny_engine: Any, sample_bytes: bytes) -> None:
    with pytest.raises(RequestError) as error:
        tiny_engine.stream([sample_bytes] * 5, question=QUESTION)
    assert str(error.value) == "a session takes 1..4 images; got 5"


def test_head_importance_keeps_two_of_tinys_four_heads_and_that_changes_the_map(
    tiny_engine: Any, sample_bytes: bytes
) -> None:
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=3)
    inputs = tiny_engine.inputs_for(sample_bytes, QUESTION)
    attn = reference.full_attentions(tiny_engine, inputs, [s.token_id for s in result])
    image = list(run.prompt.layout.positions)
    for step in result:
        importances = reference.head_importances(attn, step.position, image)
        assert len(importances) == 4 and len(reference.kept_heads(importances)) == 2
        every_head = reference.maps_for_query(attn, step.position, image, tiny_engine.grid, kept=[0, 1, 2, 3])
        assert np.abs(step.maps["head_importance"] - every_head["head_importance"]).max() > 1e-4


def test_a_file_path_streams_like_the_file_bytes(tiny_engine: Any, cxr_dir: Any, sample_bytes: bytes) -> None:
    path = cxr_dir / "nih_00000001_000.png"
    by_bytes = [s.token_id for s in tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3)]
    assert [s.token_id for s in tiny_engine.stream(path, question=QUESTION, max_new_tokens=3)] == by_bytes
    assert [s.token_id for s in tiny_engine.stream(str(path), question=QUESTION, max_new_tokens=3)] == by_bytes


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/no/such/xray.png", "image file '/no/such/xray.png' does not exist"),
        ("/", "image path '/' is a folder; pass a PNG, JPEG or DICOM file"),
    ],
)
def test_a_path_that_is_not_a_file_gets_a_clear_error(tiny_engine: Any, path: str, message: str) -> None:
    with pytest.raises(RequestError) as error:
        tiny_engine.inputs_for(path)
    assert str(error.value) == message


@pytest.mark.parametrize("preset", ["medviz", "original", "model-card"])
def test_every_prompt_preset_streams_and_is_recorded_on_the_prompt(
    tiny_engine: Any, sample_bytes: bytes, preset: str
) -> None:
    run = tiny_engine.stream(sample_bytes, max_new_tokens=1, preset=preset)
    assert run.prompt.preset == preset
    assert len(list(run)) == 1


def test_an_unknown_preset_names_the_choices(tiny_engine: Any, sample_bytes: bytes) -> None:
    with pytest.raises(RequestError) as error:
        tiny_engine.stream(sample_bytes, preset="gradio")
    assert str(error.value) == "prompt must be one of medviz, original, model-card; got 'gradio'"


def assert_context_matches_one_full_forward(engine: Any, image: Any, steps: int, **kwargs: Any) -> None:
    run, result = streamed(engine, image, max_new_tokens=steps, **kwargs)
    inputs = engine.inputs_for(image, kwargs.get("question"), kwargs.get("labels", ()))
    attn = reference.full_attentions(engine, inputs, [s.token_id for s in result])
    images = set(run.prompt.layout.positions)
    for step in result:
        expected, sink = reference.context(attn, step.position, images)
        assert [link.position for link in step.context] == [j for j, _ in expected], f"step {step.index}"
        np.testing.assert_allclose([link.value for link in step.context], [v for _, v in expected], atol=1e-5)
        assert step.sink == pytest.approx(sink, abs=1e-5)


def test_each_token_names_the_eight_text_positions_it_read_most_as_one_full_forward_does(
    tiny_engine: Any, sample_bytes: bytes
) -> None:
    assert_context_matches_one_full_forward(tiny_engine, sample_bytes, 6, question=QUESTION)


def test_the_context_stays_exact_across_the_sliding_window_and_with_two_images(cxr_dir: Any,
                                                                               sample_bytes: bytes) -> None:
    probe = load_engine("tiny").stream(sample_bytes, question=QUESTION, max_new_tokens=1).prompt
    engine = load_engine(f"tiny?window={len(probe.token_ids) - probe.layout.positions[0] + 1}")
    assert_context_matches_one_full_forward(engine, sample_bytes, 8, question=QUESTION)
    study = [sample_bytes, (cxr_dir / "nih_00027426_000_512.png").read_bytes()]
    assert_context_matches_one_full_forward(load_engine("tiny"), study, 4, question=QUESTION, labels=["PA", "prior"])


def test_the_context_leaves_out_image_tokens_and_reports_the_bos_share_apart(tiny_engine: Any,
                                                                             sample_bytes: bytes) -> None:
    run, result = streamed(tiny_engine, sample_bytes, question=QUESTION, max_new_tokens=3)
    images = set(run.prompt.layout.positions)
    for step in result:
        assert len(step.context) == 8
        assert all(link.position not in images and link.position != 0 for link in step.context)
        assert [link.value for link in step.context] == sorted((link.value for link in step.context), reverse=True)
        assert 0.0 < step.sink < 1.0


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_pipelined_maps_give_the_same_steps_cancels_and_stops(sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch,
                                                                mode: str) -> None:
    plain, pipelined = load_engine("tiny"), load_engine("tiny")
    pipelined.finisher = mode  # type: ignore[assignment]  # the host finishes step k while the model runs step k+1
    try:
        at_once = list(plain.stream(sample_bytes, question=QUESTION, max_new_tokens=5))
        run = pipelined.stream(sample_bytes, question=QUESTION, max_new_tokens=5)
        behind = list(run)
        assert [(s.index, s.token_id, s.text) for s in behind] == [(s.index, s.token_id, s.text) for s in at_once]
        for a, b in zip(at_once, behind):
            assert all(np.array_equal(a.maps[m], b.maps[m]) for m in METHODS)
            assert (a.stats, a.context, a.sink, a.image_mass) == (b.stats, b.context, b.sink, b.image_mass)
        assert run.end is not None and (run.end.reason, run.end.tokens) == ("max_tokens", 5)
        run, taken = cancelled_after(pipelined, sample_bytes, 2)
        assert len(taken) == 2 and run.end is not None and (run.end.reason, run.end.tokens) == ("cancelled", 2)
        again = list(pipelined.stream(sample_bytes, question=QUESTION, max_new_tokens=5))  # after a cancel, in step
        assert [(s.index, s.token_id) for s in again] == [(s.index, s.token_id) for s in at_once]
        assert all(np.array_equal(a.maps["consensus"], b.maps["consensus"]) for a, b in zip(at_once, again))
        from medviz_core.engine import decoding
        calls = iter([40, 41, pipelined.end_of_turn_id, 42])
        monkeypatch.setattr(decoding.TokenChooser, "choose", lambda self, history, logits: next(calls))
        run = pipelined.stream(sample_bytes, question=QUESTION, max_new_tokens=10)
        assert [s.token_id for s in run] == [40, 41, pipelined.end_of_turn_id]
        assert run.end is not None and run.end.reason == "end_of_turn"
    finally:
        pipelined.close()


def test_a_maps_process_that_dies_ends_the_run_with_an_error_that_says_so(sample_bytes: bytes) -> None:
    engine = load_engine("tiny")
    engine.finisher = "process"
    try:
        run = engine.stream(sample_bytes, question=QUESTION, max_new_tokens=6)
        next(run)
        os.kill(engine.maps_process().pid, signal.SIGKILL)
        time.sleep(0.2)
        with pytest.raises(MapsProcessError) as error:
            list(run)
        assert str(error.value) == "the maps process ended unexpectedly (exit code -9)"
        assert run.end is not None and run.end.reason == "error"
        assert run.end.message == "MapsProcessError: the maps process ended unexpectedly (exit code -9)"
        again = engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3)  # on a new maps process
        assert len(list(again)) == 3 and again.end is not None and again.end.reason == "max_tokens"
    finally:
        engine.close()


def test_two_runs_interleaved_on_one_engine_each_get_their_own_maps(sample_bytes: bytes) -> None:
    engine, plain = load_engine("tiny"), load_engine("tiny")
    engine.finisher = "process"
    try:
        alone = list(plain.stream(sample_bytes, question=QUESTION, max_new_tokens=3))
        raw_only = list(plain.stream(sample_bytes, question=QUESTION, max_new_tokens=3, methods=["raw"]))
        first = engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3)  # holds the maps process
        second = engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3, methods=["raw"])  # inline
        mixed = [(next(first), next(second)) for _ in range(3)]
        for (a, b), x, y in zip(mixed, alone, raw_only):
            assert set(a.maps) == set(METHODS) and set(b.maps) == {"raw"}
            assert np.array_equal(a.maps["consensus"], x.maps["consensus"])
            assert np.array_equal(b.maps["raw"], y.maps["raw"])
    finally:
        engine.close()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the child's mapped libraries from /proc")
def test_the_maps_process_imports_no_torch(sample_bytes: bytes) -> None:
    engine = load_engine("tiny")
    engine.finisher = "process"
    try:
        assert len(list(engine.stream(sample_bytes, question=QUESTION, max_new_tokens=2))) == 2
        mapped = Path(f"/proc/{engine.maps_process().pid}/maps").read_text()
        assert "libtorch" not in mapped
        assert "cv2" in mapped  # it did the work
    finally:
        engine.close()


def test_a_maps_process_that_cannot_start_leaves_the_maps_inline_with_a_note(
        sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from medviz_core.engine import engine as engine_module
    def cannot_start() -> None:
        raise MapsProcessError("the maps process could not start: [Errno 2] No such file or directory")

    monkeypatch.setattr(engine_module, "MapsProcess", cannot_start)
    engine = load_engine("tiny")
    engine.finisher = "process"
    capsys.readouterr()  # what loading printed
    steps = list(engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3))
    assert len(steps) == 3 and engine.finisher == "inline"
    assert capsys.readouterr().err == ("[medviz] the maps process could not start: [Errno 2] No such file or directory;"
                                       " each step's maps are computed inline\n")
