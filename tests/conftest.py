"""Shared fixtures: the sample X-rays beside the repo and one tiny engine per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CXR_DIR = REPO.parent / "shared" / "data" / "cxr"
SAMPLE = "nih_00000001_000.png"


@pytest.fixture(scope="session")
def cxr_dir() -> Path:
    if not CXR_DIR.is_dir():
        pytest.fail(f"sample X-rays not found at {CXR_DIR}; the repo expects ../shared/data/cxr beside it")
    return CXR_DIR


@pytest.fixture(scope="session")
def sample_bytes(cxr_dir: Path) -> bytes:
    return (cxr_dir / SAMPLE).read_bytes()


@pytest.fixture(scope="session")
def tiny_engine():  # type: ignore[no-untyped-def]
    from medviz_core.models import load_engine

    return load_engine("tiny")
