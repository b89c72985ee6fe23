"""`medviz faithfulness RECORDING`: deletion/insertion for every chosen token, the server's numbers,
kept in the recording so a replay (and the next run) shows them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from medviz_core.analyses import batch as batch_analysis
from medviz_core.analyses.batch import parse_tokens
from medviz_core.analyses.compute import job_id, recording_source
from medviz_core.analyses.kinds import compute
from medviz_core.errors import RequestError
from medviz_core.recording.file import read_recording
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame, FaithfulnessResult
from server.cli.main import main


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, cxr_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("batch") / "three_tokens.medviz"
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--out", str(out), "--model", "tiny",
                 "--max-new-tokens", "3"]) == 0
    return out


def recorded_results(path: Path) -> dict[str, FaithfulnessResult]:
    found = {}
    for recorded in read_recording(path).analyses:
        frame = recorded.frame
        assert isinstance(frame, AnalysisFrame) and isinstance(frame.result, FaithfulnessResult)
        found[frame.job] = frame.result
    return found


def rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("token "))
    end = next(i for i, line in enumerate(lines) if line.startswith("mean over tokens"))
    return [line.split() for line in lines[header + 1 : end]]


def test_each_chosen_token_and_method_is_scored_and_kept_in_the_recording(
    recording: Path, capsys: pytest.CaptureFixture[str], tiny_engine: Any
) -> None:
    capsys.readouterr()
    assert main(["faithfulness", str(recording), "--methods", "raw,consensus", "--steps", "2", "--tokens", "1:2"]) == 0
    printed = rows(capsys.readouterr().out)
    requests = [AnalyzeRequest("faithfulness", i, method=m, steps=2) for i in (1, 2) for m in ("raw", "consensus")]
    kept = recorded_results(recording)
    assert sorted(kept) == sorted(job_id(r) for r in requests)
    assert [(row[0], row[-5]) for row in printed] == [(str(r.index), r.method) for r in requests]
    for row, request in zip(printed, requests):
        result = kept[job_id(request)]
        assert row[-4:] == [f"{a:.4f}" for a in (result.deletion.auc, result.insertion.auc,
                                                   result.random_deletion.auc, result.random_insertion.auc)]
    # one job as the server runs it gives the same numbers (the batch shares a token's random baselines)
    source = recording_source(recording.stem, recording, read_recording(recording))
    direct = compute(tiny_engine, source, requests[1], threading.Event())
    assert isinstance(direct, FaithfulnessResult)
    assert direct == kept[job_id(requests[1])]


def test_a_second_run_answers_from_the_recording_without_computing(
    recording: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["faithfulness", str(recording), "--methods", "raw", "--steps", "2", "--tokens", "1:2",
                 "--no-save"]) == 0
    before = recorded_results(recording)

    def must_not_run(*args: Any) -> None:
        raise AssertionError("a recorded result was computed again")

    monkeypatch.setattr(batch_analysis, "faithfulness_of_token", must_not_run)
    monkeypatch.setattr("medviz_core.models.load.load_engine", must_not_run)  # nothing to compute: no model loaded
    capsys.readouterr()
    assert main(["faithfulness", str(recording), "--methods", "raw", "--steps", "2", "--tokens", "1:2"]) == 0
    printed = rows(capsys.readouterr().out)
    assert [row[-1] for row in printed] == ["(recorded)", "(recorded)"]
    assert recorded_results(recording) == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tokens", "2:9"], "medviz: --tokens '2:9' must pick tokens within 0..2\n"),
        (["--tokens", "a:b"], "medviz: --tokens must be A:B or N with integers; got 'a:b'\n"),
        (["--methods", "raw,vibes"], "medviz: --methods: unknown vibes; expected 'all' or some of raw, "
                                     "layer_weighted, head_importance, flow, rollout, consensus, gradient\n"),
        (["--steps", "999"], "medviz: faithfulness steps must be at most the 256 grid cells; got 999\n"),
        (["--steps", "0"], "medviz: faithfulness steps must be at least 1; got 0\n"),
    ],
)
def test_a_bad_choice_is_one_clear_line_and_nothing_is_written(
    recording: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    before = recording.read_bytes()
    assert main(["faithfulness", str(recording), *arguments]) == 2
    assert capsys.readouterr().err == message
    assert recording.read_bytes() == before


def test_another_model_computes_afresh_and_leaves_the_recording_alone(
    recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = recording.read_bytes()
    assert main(["faithfulness", str(recording), "--methods", "raw", "--steps", "2", "--tokens", "1",
                 "--model", "tiny?window=512"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("medviz: model 'tiny?window=512' is not the recording's ('tiny'): its results are "
                                   "computed afresh and not added to the recording\n")
    (row,) = rows(captured.out)
    assert row[0] == "1" and row[-1] != "(recorded)"
    assert recording.read_bytes() == before


def test_a_missing_recording_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["faithfulness", str(tmp_path / "nope.medviz")]) == 2
    assert capsys.readouterr().err == f"medviz: no recording at {str(tmp_path / 'nope.medviz')!r}\n"


def test_token_ranges_include_both_ends_as_export_reads_them() -> None:
    assert parse_tokens(None, 5) == range(5)
    assert parse_tokens("1:2", 5) == range(1, 3)
    assert parse_tokens(":1", 5) == range(0, 2)
    assert parse_tokens("3:", 5) == range(3, 5)
    assert parse_tokens("4", 5) == range(4, 5)
    with pytest.raises(RequestError):
        parse_tokens("5", 5)
