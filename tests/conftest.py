"""Shared fixtures: the sample X-rays beside the repo and one tiny engine per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.pacs.fixtures"]  # the PACS fixtures, one real Orthanc for the whole run
REPO = Path(__file__).resolve().parents[1]
CXR_DIR = REPO.parent / "shared" / "data" / "cxr"
SAMPLE = "nih_00000001_000.png"


@pytest.fixture(scope="session", autouse=True)
def user_data_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$XDG_DATA_HOME (where recordings go by default) is a temporary folder for every test and every
    server a test starts: nothing is written to the user's own data folder."""
    folder = tmp_path_factory.mktemp("xdg-data")
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_DATA_HOME", str(folder))
    yield folder
    patch.undo()


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
    from medviz_core.models.load import load_engine

    return load_engine("tiny")
