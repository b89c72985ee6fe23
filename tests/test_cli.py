"""`medviz generate` streams tokens with their peak zone and image_mass, and fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from medviz_core.cli import main
from medviz_core.types import ZONES


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
