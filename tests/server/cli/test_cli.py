"""`medviz generate` streams tokens with their peak zone and image_mass, and fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from medviz_core.types import ZONES
from server.cli.main import build_parser, main
from server.settings import Settings


def test_generate_prints_one_line_per_token_with_zone_and_image_mass(cxr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(cxr_dir / "nih_00000003_001.png"), "--model", "tiny", "--max-new-tokens", "3",
                 "--question", "Is there a hernia?"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    token_lines = [line for line in out if "image_mass" in line]
    assert len(token_lines) == 3
    assert all(any(f"peak {zone}" in line for zone in ZONES) for line in token_lines)
    assert out[-1].startswith("[max_tokens: 3 tokens in ")


def test_generate_with_a_missing_image_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "/no/such.png", "--model", "tiny"])
    assert code == 2
    assert capsys.readouterr().err == "medviz: image file '/no/such.png' does not exist\n"


def test_generate_with_an_unknown_model_fails_in_one_line(cxr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(cxr_dir / "nih_00000003_001.png"), "--model", "nonsense"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("medviz: unknown model 'nonsense'; use tiny, demo") and err.count("\n") == 1


def test_analyze_prints_gradient_heads_and_faithfulness(cxr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", str(cxr_dir / "nih_00000003_001.png"), "--model", "tiny", "--token", "1",
                 "--max-new-tokens", "2", "--faithfulness", "consensus", "--steps", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("model tiny (cpu); repetition_penalty 1, temperature 0\ntoken 1: ")
    assert "gradient relevancy (Chefer)" in out
    assert sum(line.startswith("L") for line in out.splitlines()) == 4  # one line per tiny layer
    assert "faithfulness of consensus: deletion AUC " in out


def test_agreement_reports_every_method_for_images_with_boxes(cxr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["agreement", str(cxr_dir), "--model", "tiny", "--max-new-tokens", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("model tiny (cpu); repetition_penalty 1, temperature 0\n"
                          "== commons_haggstrom_normal_pa.jpg\nimage 786x899, boxes: heart, right lung, left lung\n")
    assert [line.split()[0] for line in out.splitlines()[4:10]] == [
        "raw", "layer_weighted", "head_importance", "flow", "rollout", "consensus"]
    assert all(line.split()[1] == "2" for line in out.splitlines()[4:10])


def test_generate_with_two_images_prints_each_image_share(cxr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", str(cxr_dir / "nih_00000003_001.png"), str(cxr_dir / "nih_00027426_000_512.png"),
                 "--model", "tiny", "--max-new-tokens", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "image_mass" in line]
    assert code == 0 and len(lines) == 2
    assert all(" 0:" in line and " 1:" in line for line in lines)


def test_every_command_that_loads_a_model_defaults_to_the_demo_as_the_server_does() -> None:
    parser = build_parser()
    commands = ("generate", "analyze", "agreement", "record")
    assert {command: parser.parse_args([command, "x.png"]).model for command in commands} == dict.fromkeys(
        commands, "demo")
    assert parser.parse_args(["serve"]).model is None and Settings().model == "demo"  # serve: Settings' default
