"""Sampling values: none passes the checks and then fails in torch. An extreme value gets one clear
bad_request naming the range; a value at each edge of a range runs to `end` on the tiny model."""

from __future__ import annotations

from typing import Any

import pytest

from medviz_core.errors import RequestError
from medviz_core.types import GenerationParams
from medviz_core.wire import server_frames as frames
from tests.server.helpers import LiveServer, kinds, raw_start, refused, run, session

TEMPERATURE = "temperature must be 0 (greedy) or in 0.01..5; got {}"
PENALTY = "repetition_penalty must be in 0.01..10; got {}"
TOP_P = "top_p must be in (0, 1]; got {}"


@pytest.mark.parametrize(("params", "message"), [
    ({"temperature": 1e-300}, TEMPERATURE.format("1e-300")),
    ({"temperature": 1e-40}, TEMPERATURE.format("1e-40")),
    ({"temperature": 5e-324}, TEMPERATURE.format("5e-324")),
    ({"temperature": 0.0099}, TEMPERATURE.format("0.0099")),
    ({"temperature": 5.0001}, TEMPERATURE.format("5.0001")),
    ({"temperature": 1e308}, TEMPERATURE.format("1e+308")),
    ({"temperature": float("nan")}, TEMPERATURE.format("nan")),
    ({"temperature": float("inf")}, TEMPERATURE.format("inf")),
    ({"temperature": -1e-300}, TEMPERATURE.format("-1e-300")),
    ({"repetition_penalty": 1e-300}, PENALTY.format("1e-300")),
    ({"repetition_penalty": 0.0}, PENALTY.format("0.0")),
    ({"repetition_penalty": 0.0099}, PENALTY.format("0.0099")),
    ({"repetition_penalty": 10.5}, PENALTY.format("10.5")),
    ({"repetition_penalty": float("-inf")}, PENALTY.format("-inf")),
    ({"repetition_penalty": float("nan")}, PENALTY.format("nan")),
    ({"top_p": 0.0}, TOP_P.format("0.0")),
    ({"top_p": float("nan")}, TOP_P.format("nan")),
])
def test_an_extreme_sampling_value_gets_a_bad_request_naming_the_range(
    params: dict[str, Any], message: str, live: LiveServer, sample_bytes: bytes
) -> None:
    error, code, _ = run(refused(f"{live.ws}/ws/session", raw_start(images=[sample_bytes], params=params)))
    assert (error, code) == (frames.ErrorFrame("bad_request", message), 4400)


@pytest.mark.parametrize("params", [
    {"temperature": 0.01, "seed": 1},
    {"temperature": 5.0, "seed": 1},
    {"repetition_penalty": 0.01},
    {"repetition_penalty": 10.0},
    {"temperature": 0.01, "repetition_penalty": 0.01, "seed": 2},
    {"temperature": 5.0, "repetition_penalty": 10.0, "top_k": 1, "seed": 3},
    {"temperature": 1.0, "top_p": 5e-324, "seed": 2**64 - 1},
    {"temperature": 1.0, "seed": -(2**63)},
])
def test_a_value_at_the_edge_of_each_range_runs_to_the_end(
    params: dict[str, Any], live: LiveServer, sample_bytes: bytes
) -> None:
    data = run(session(live, sample_bytes, max_new_tokens=3, **params))
    assert kinds(data) == ["start", "step", "step", "step", "end"]
    end = frames.decode(data[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("max_tokens", 3)


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_torch_cannot_take_is_refused_when_the_params_are_made(seed: int) -> None:
    with pytest.raises(RequestError, match=r"^seed must be an integer in -2\*\*63..2\*\*64-1 or None; got -?\d+$"):
        GenerationParams(temperature=1.0, seed=seed)
