"""The engine's checks on CUDA: same test bodies as the CPU ones, skipped without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from medviz_core.models.load import load_engine
from medviz_core.types import METHODS
from tests.engine.test_engine import QUESTION, assert_maps_match_one_full_forward

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def cuda_tiny() -> Any:
    return load_engine("tiny?device=cuda")


def test_every_streamed_map_equals_one_full_forward_pass_on_cuda(cuda_tiny: Any, sample_bytes: bytes) -> None:
    assert cuda_tiny.facts.device.startswith("cuda")
    assert_maps_match_one_full_forward(cuda_tiny, sample_bytes, QUESTION, steps=6)


def test_greedy_tokens_on_cuda_equal_the_cpu_ones(cuda_tiny: Any, tiny_engine: Any, sample_bytes: bytes) -> None:
    on_gpu = [s.token_id for s in cuda_tiny.stream(sample_bytes, question=QUESTION, max_new_tokens=8)]
    on_cpu = [s.token_id for s in tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=8)]
    assert on_gpu == on_cpu


def test_medgemma_shapes_stream_finite_maps_in_bf16(sample_bytes: bytes) -> None:
    engine = load_engine("random:medgemma-4b?layers=6")
    assert (engine.facts.dtype, engine.facts.heads, engine.facts.kv_heads) == ("bfloat16", 8, 4)
    steps = list(engine.stream(sample_bytes, max_new_tokens=3))
    assert len(steps) == 3
    for step in steps:
        assert all(np.isfinite(step.maps[m]).all() and step.maps[m].shape == (16, 16) for m in METHODS)
        assert 0.0 <= step.image_mass <= 1.0 + 1e-3


def test_medgemma_shapes_in_bf16_on_cuda_match_an_eager_forward_within_bf16_precision(sample_bytes: bytes) -> None:
    from tests.models.test_medgemma_standin import assert_bf16_maps_match_an_eager_forward

    engine = load_engine("random:medgemma-4b?layers=6&device=cuda")
    assert engine.facts.device.startswith("cuda")
    assert_bf16_maps_match_an_eager_forward(engine, sample_bytes)
