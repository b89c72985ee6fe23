"""The DICOM export tests' source: the real NIH DICOM beside the repo, read header-only
(stop_before_pixels) as a recording keeps it, and its picture as imaging.load_image makes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medviz_core.imaging.load import load_image

SOURCE = "nih_00000002_000_dx.dcm"


@pytest.fixture(scope="module")
def header(cxr_dir: Path) -> Dataset:
    dataset = pydicom.dcmread(cxr_dir / SOURCE, stop_before_pixels=True)
    assert "PixelData" not in dataset
    return dataset


@pytest.fixture(scope="module")
def picture(cxr_dir: Path) -> np.ndarray:
    return load_image((cxr_dir / SOURCE).read_bytes())
