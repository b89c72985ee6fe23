"""The compiled decode path (torch.compile over a static cache) gives the eager path's tokens and maps on tiny."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from medviz_core.models.load import load_engine
from medviz_core.types import METHODS
from tests.engine.test_engine import QUESTION

pytestmark = pytest.mark.slow


def assert_same_run(eager: list[Any], compiled: list[Any]) -> None:
    assert [s.token_id for s in compiled] == [s.token_id for s in eager]
    for a, b in zip(eager, compiled):
        for name in METHODS:
            np.testing.assert_allclose(b.maps[name], a.maps[name], atol=1e-5, rtol=0, err_msg=f"{name} {a.index}")
        assert b.image_mass == pytest.approx(a.image_mass, abs=1e-6)
        assert b.layers_seeing_image == a.layers_seeing_image
        assert [link.position for link in b.context] == [link.position for link in a.context]
        np.testing.assert_allclose([link.value for link in b.context], [link.value for link in a.context], atol=1e-6)
        assert b.sink == pytest.approx(a.sink, abs=1e-6)


def test_compiled_steps_give_the_eager_tokens_and_maps(tiny_engine: Any, sample_bytes: bytes) -> None:
    compiled = load_engine("tiny", compile=True)
    eager = list(tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=6))
    run = compiled.stream(sample_bytes, question=QUESTION, max_new_tokens=6)
    assert_same_run(eager, list(run))
    assert run.end is not None and run.end.timings["compile_s"] > 0
    assert compiled.compile  # it did not fall back


def test_the_compiled_graph_is_reused_by_later_runs_in_the_same_length_bucket(sample_bytes: bytes) -> None:
    engine = load_engine("tiny", compile=True)
    list(engine.stream(sample_bytes, question=QUESTION, max_new_tokens=3))
    decoder = next(iter(engine._decoders.values()))
    first_compile = decoder.compile_seconds
    other = "Is the heart enlarged?"  # another prompt and length, in the same length bucket
    eager = list(load_engine("tiny").stream(sample_bytes, question=other, max_new_tokens=5))
    assert_same_run(eager, list(engine.stream(sample_bytes, question=other, max_new_tokens=5)))
    assert len(engine._decoders) == 1 and decoder.compile_seconds == first_compile


@pytest.mark.parametrize("in_graph", [False, True], ids=["rows reduced after the graph (CPU)",
                                                        "rows reduced inside the graph (CUDA)"])
def test_compiled_steps_stay_exact_across_the_sliding_window(sample_bytes: bytes, in_graph: bool) -> None:
    probe = load_engine("tiny").stream(sample_bytes, question=QUESTION, max_new_tokens=1).prompt
    window = len(probe.token_ids) - probe.layout.positions[0] + 1  # the image leaves the window after a few tokens
    eager = list(load_engine(f"tiny?window={window}").stream(sample_bytes, question=QUESTION, max_new_tokens=8))
    engine = load_engine(f"tiny?window={window}", compile=True)
    engine.reduce_in_graph = in_graph
    compiled = list(engine.stream(sample_bytes, question=QUESTION, max_new_tokens=8))
    assert next(iter(engine._decoders.values())).reduce_in_graph is in_graph
    assert [s.layers_seeing_image for s in compiled][0] == 4 and compiled[-1].layers_seeing_image == 1
    assert_same_run(eager, compiled)


def test_where_compiling_fails_the_run_says_so_in_one_line_and_goes_on_eagerly(
    tiny_engine: Any, sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_compiler(fn: Any, **kwargs: Any) -> Any:
        def fail(*args: Any) -> Any:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in cpp_builder.py")
        return fail

    monkeypatch.setattr(torch, "compile", no_compiler)
    engine = load_engine("tiny", compile=True)
    eager = list(tiny_engine.stream(sample_bytes, question=QUESTION, max_new_tokens=4))
    assert_same_run(eager, list(engine.stream(sample_bytes, question=QUESTION, max_new_tokens=4)))
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[medviz]")]
    assert notes == [
        "[medviz] torch.compile could not compile the decode step here (RuntimeError: InvalidCxxCompiler: No working "
        "C++ compiler found in cpp_builder.py); running eagerly"
    ]
    assert not engine.compile
