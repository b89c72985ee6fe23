"""On-demand analysis on tiny: gradient relevancy equals direct autograd; views and scorer are consistent."""

from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np
import pytest
import torch

from medviz_core.analyses.gradient import gradient_relevancy, layer_head_view, token_context, token_scorer
from medviz_core.engine.capture import Cancelled
from medviz_core.errors import RequestError

QUESTION = "Is there a nodule?"


@pytest.fixture(scope="module")
def run_tokens(tiny_engine: Any, sample_bytes: bytes) -> list[int]:
    return [s.token_id for s in tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=5)]


def direct_chefer(engine: Any, context: Any) -> np.ndarray:
    """Eager attention + torch.autograd.grad + the rule written out with loops, in float64."""
    model = copy.deepcopy(engine.model)
    model.set_attn_implementation("eager")
    inputs = context.inputs
    before = torch.tensor([list(context.generated[: context.index])], dtype=torch.long)
    ids = torch.cat([inputs["input_ids"], before], dim=1)
    types = torch.cat([inputs["token_type_ids"], torch.zeros_like(before)], dim=1)
    hook = model.get_input_embeddings().register_forward_hook(lambda m, i, o: o.detach().requires_grad_(True))
    with torch.enable_grad():
        out = model(input_ids=ids, pixel_values=inputs["pixel_values"], token_type_ids=types,
                    attention_mask=torch.ones_like(ids), output_attentions=True, use_cache=False)
        grads = torch.autograd.grad(out.logits[0, -1, context.target], out.attentions)
    hook.remove()
    size = ids.shape[1]
    R = np.eye(size)
    for attention, grad in zip(out.attentions, grads):
        A, G = attention[0].detach().double().numpy(), grad[0].double().numpy()
        Abar = np.maximum(G * A, 0).mean(0)
        R = R + Abar @ R
    image = [i for i, t in enumerate(inputs["input_ids"][0].tolist()) if t == engine.image_token_id]
    return R[size - 1, image].reshape(-1, *engine.grid)


@pytest.mark.parametrize("index", [0, 3])
def test_gradient_relevancy_matches_direct_autograd(tiny_engine: Any, sample_bytes: bytes, run_tokens: list[int], index: int) -> None:
    context = token_context(tiny_engine, sample_bytes, QUESTION, run_tokens, index)
    ours = gradient_relevancy(tiny_engine, context)
    np.testing.assert_allclose(ours, direct_chefer(tiny_engine, context), atol=1e-5, rtol=0)
    assert ours.shape == (1, 16, 16) and ours.dtype == np.float32 and ours.max() > 0


def test_gradient_relevancy_leaves_the_streamed_tokens_unchanged(tiny_engine: Any, sample_bytes: bytes, run_tokens: list[int]) -> None:
    gradient_relevancy(tiny_engine, token_context(tiny_engine, sample_bytes, QUESTION, run_tokens, 2))
    again = [s.token_id for s in tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=5)]
    assert again == run_tokens
    assert all(p.grad is None for p in tiny_engine.model.parameters())


def test_gradient_relevancy_can_be_cancelled(tiny_engine: Any, sample_bytes: bytes, run_tokens: list[int]) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        gradient_relevancy(tiny_engine, token_context(tiny_engine, sample_bytes, QUESTION, run_tokens, 1), cancel)


def test_layer_head_view_agrees_with_the_streamed_raw_map(tiny_engine: Any, sample_bytes: bytes) -> None:
    steps = list(tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3))
    context = token_context(tiny_engine, sample_bytes, QUESTION, [s.token_id for s in steps], 2)
    view = layer_head_view(tiny_engine, context)
    assert view.maps.shape == (4, 4, 1, 16, 16)
    np.testing.assert_allclose(view.maps[-1, :, 0].mean(0), steps[2].maps["raw"], atol=1e-6, rtol=0)
    assert float(view.image_mass.mean()) == pytest.approx(steps[2].image_mass, abs=1e-6)
    assert np.all((view.entropy >= 0) & (view.entropy <= 1 + 1e-6))


def test_scorer_gives_the_probability_of_the_explained_token(tiny_engine: Any, sample_bytes: bytes, run_tokens: list[int]) -> None:
    from medviz_core.imaging.load import load_image

    context = token_context(tiny_engine, sample_bytes, QUESTION, run_tokens, 1)
    score = token_scorer(tiny_engine, context, QUESTION)
    image = load_image(sample_bytes)
    probability = score(image)
    assert 0.0 < probability <= 1.0
    assert score(np.zeros_like(image)) != probability


def test_a_token_index_out_of_range_is_refused(tiny_engine: Any, sample_bytes: bytes) -> None:
    with pytest.raises(RequestError) as error:
        token_context(tiny_engine, sample_bytes, QUESTION, [1, 2], 2)
    assert str(error.value) == "token index must be in 0..1; got 2"


def test_gradient_relevancy_gives_one_exact_map_per_image(tiny_engine: Any, cxr_dir: Any) -> None:
    images = [(cxr_dir / "nih_00000001_000.png").read_bytes(), (cxr_dir / "commons_haggstrom_normal_pa.jpg").read_bytes()]
    tokens = [s.token_id for s in tiny_engine.stream(images, question=QUESTION, max_new_tokens=3, labels=["PA", "prior"])]
    context = token_context(tiny_engine, images, QUESTION, tokens, 2, labels=["PA", "prior"])
    ours = gradient_relevancy(tiny_engine, context)
    assert ours.shape == (2, 16, 16)
    np.testing.assert_allclose(ours, direct_chefer(tiny_engine, context), atol=1e-5, rtol=0)


def test_a_study_scorer_replaces_only_the_chosen_image(tiny_engine: Any, cxr_dir: Any) -> None:
    from medviz_core.imaging.load import load_image

    files = [(cxr_dir / "nih_00000001_000.png").read_bytes(), (cxr_dir / "nih_00027426_000_512.png").read_bytes()]
    study = [load_image(f) for f in files]
    tokens = [s.token_id for s in tiny_engine.stream(files, question=QUESTION, max_new_tokens=2, labels=["PA", "lateral"])]
    context = token_context(tiny_engine, files, QUESTION, tokens, 1, labels=["PA", "lateral"])
    on_first = token_scorer(tiny_engine, context, QUESTION, study, ["PA", "lateral"], image_index=0)
    on_second = token_scorer(tiny_engine, context, QUESTION, study, ["PA", "lateral"], image_index=1)
    assert on_first(study[0]) == pytest.approx(on_second(study[1]), abs=1e-7)  # both: the study as it was
    assert on_first(np.zeros_like(study[0])) != on_second(np.zeros_like(study[1]))
    with pytest.raises(RequestError) as error:
        token_scorer(tiny_engine, context, QUESTION, study, [], image_index=2)
    assert str(error.value) == "image index must be in 0..1; got 2"
